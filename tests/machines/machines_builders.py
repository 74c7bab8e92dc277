"""Builders shared by the machine tests (imported as `machines_builders`; see conftest.py)."""

from __future__ import annotations

from ipaddress import IPv4Network

from bootsrv.config import NetworkSection
from bootsrv.machines import enrollment
from bootsrv.machines.binding import Identity
from bootsrv.machines.model import Machine, State

NOW = 1_800_000_000.0
MAC = "52:54:00:12:34:56"
OTHER_MAC = "52:54:00:ab:cd:ef"
# Where each test machine's installer speaks from: the address bootsrv leased it.
ADDRESSES = {MAC: "192.0.2.10", OTHER_MAC: "192.0.2.11"}
STRANGER = "192.0.2.66"  # another client of the boot segment

NETWORKS = [
    NetworkSection(name="public", segment="odd", subnet=IPv4Network("192.0.2.0/24")),
    NetworkSection(name="backend", segment="odd", subnet=IPv4Network("10.1.0.0/24")),
]


def facts(mac: str = MAC, **over) -> dict:
    data = {
        "hostname": "hv1.lab.example",
        "cpus": 16,
        "memory_mib": 65536,
        "nics": [{"name": "fe0", "mac": mac}, {"name": "be0", "mac": "52:54:00:00:00:02"}],
        "disks": [{"name": "sda", "size_bytes": 500_107_862_016}, {"name": "sdb", "size_bytes": 500_107_862_016}],
        "hypervisor": "kvm",
        "libvirt_uri": "qemu+ssh://hv1.lab.example/system",
    }
    data.update(over)
    return data


def machine(mac: str = MAC, **over) -> Machine:
    base = dict(mac=mac, hostname="hv1", state=State.NEW, profile="debian12-kvm-hypervisor", created=NOW, updated=NOW)
    base.update(over)
    return Machine(**base)


def identify(machine: Machine, hypervisor: str | None = None) -> Identity:
    """What bootsrv knows of a test machine: its hostname, its FQDN in lab.example (the repo's
    site domain) and its address from ADDRESSES; the hypervisor only when asked for."""
    names = frozenset({machine.hostname, f"{machine.hostname.split('.')[0]}.lab.example"})
    addresses = frozenset({ADDRESSES[machine.mac]} if machine.mac in ADDRESSES else ())
    return Identity(machine.mac, names, addresses, hypervisor)


def enroll(registry, body, now: float, client: str | None = None):
    """The enrollment callback as the machine's installer makes it: from the machine's address
    (the MAC named in the body), unless `client` says otherwise."""
    if client is None:
        mac = body.get("mac") if isinstance(body, dict) else None
        client = ADDRESSES.get(mac, STRANGER) if isinstance(mac, str) else STRANGER
    return enrollment.enroll(registry, body, now, client=client, identify=identify)


class CountingRegistry:
    """A MachineRegistry that counts its writes (each one a locked rewrite of the file)."""

    def __init__(self, inner):
        self.inner, self.writes = inner, 0

    def get(self, mac):
        return self.inner.get(mac)

    def list(self):
        return self.inner.list()

    def put(self, m, expected):
        self.writes += 1
        return self.inner.put(m, expected)

    def put_many(self, machines, removals=()):
        self.writes += 1
        return self.inner.put_many(machines, removals)

    def remove(self, mac, expected):
        self.writes += 1
        return self.inner.remove(mac, expected)
