"""Builders shared by the HTTP boot tests (imported as `boot_builders`; see conftest.py)."""

from __future__ import annotations

from pathlib import Path

from bootsrv.app.wiring import Wiring
from bootsrv.config import parse
from bootsrv.leases import client_id_of_mac
from bootsrv.machines.model import MemoryRegistry

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0
BASE = "http://192.0.2.1:8080"


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


# The boot segment of the unit tests, for make_wiring's `tail`: bootsrv (owner 192.0.2.1) leases
# 192.0.2.100-199 to the machines that PXE-boot there.
LAN = """
[[networks]]
name = "lan"
subnet = "192.0.2.0/24"
lease_time = 86400
[[networks.ranges]]
start = "192.0.2.100"
end = "192.0.2.199"
"""


def make_wiring(tmp_path: Path, extra: str = "", tail: str = "") -> Wiring:
    """The real app's wiring over a MemoryRegistry; `extra` goes into [boot], `tail` after the
    last section (networks, e.g. LAN)."""
    text = f"""
[store]
directory = "{tmp_path}/store"
[boot]
files_root = "{tmp_path}/files"
http_base_url = "{BASE}"
{extra}
[profiles]
profiles_dir = "{REPO / "profiles"}"
templates_dir = "{REPO / "templates"}"
{tail}
"""
    wiring = Wiring(parse(text, "test.toml"), clock=Clock())
    wiring.machines = MemoryRegistry()  # a cached_property: the instance attribute replaces it
    (tmp_path / "files").mkdir(exist_ok=True)
    return wiring


def lease(wiring: Wiring, mac: str, network: str = "lan") -> str:
    """What bootsrv's DHCP does for a PXE client (DISCOVER/OFFER, REQUEST/ACK) in the lease store:
    an address leased to `mac`'s client id. Returns the address."""
    client = client_id_of_mac(mac)
    offered = wiring.leases.offer(network, client, wiring.clock(), hold=30)
    return str(wiring.leases.ack(network, offered.ip, client, wiring.clock(), 86400).ip)


def lab_serve_config(tmp_path: Path, server: str, profiles_dir: Path = REPO / "profiles") -> str:
    """`bootsrv serve` for the lab VM tests: HTTP only (the VM's iPXE is told where to go), the
    store and files root under tmp_path, unknown MACs boot locally."""
    return f"""
[server]
owner_ips = ["{server}"]
[store]
directory = "{tmp_path}/store"
[dhcp]
enabled = false
[dns]
enabled = false
[boot]
files_root = "{tmp_path}/files"
http_base_url = "http://{server}:8080"
unknown_machines = "local"
[http]
address = "{server}"
[profiles]
profiles_dir = "{profiles_dir}"
templates_dir = "{REPO / "templates"}"
"""


def installer_facts(mac: str, **over) -> dict:
    """What an installer's callback reports for hv1 with one NIC of `mac`; `over` changes fields."""
    data = {
        "hostname": "hv1.lab.example",
        "cpus": 4,
        "memory_mib": 4096,
        "nics": [{"name": "eth0", "mac": mac}],
        "disks": [{"name": "vda", "size_bytes": 1 << 30}],
        "hypervisor": "kvm",
        "libvirt_uri": "qemu+ssh://root@hv1.lab.example/system",
    }
    data.update(over)
    return data
