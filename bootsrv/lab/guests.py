"""Shared by the guest integration tests, bench/bench_guests.py and the demo: hypervisors in lab namespaces
(each a libvirtd started by hand, with bridges fe0/be0 on two lab segments), a tiny bootable
master image, and the `Guests` use cases wired to them."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from bootsrv.lab import vm as labvm
from bootsrv.lab.libvirtd import Libvirtd
from bootsrv.lab.netns import Host, Lab, Segment
from bootsrv.virt.bindings import AddressPlan, MemoryBindings
from bootsrv.virt.guests import Boot, Guests
from bootsrv.virt.hosts import MemoryHypervisors
from bootsrv.virt.libvirt_adapter import Connections
from bootsrv.virt.names import GuestRef, VersionRef
from bootsrv.virt.placement import HypervisorInfo
from bootsrv.virt.settings import GuestSettings

MARKER = b"BOOTSRV-MASTER-osol-0811"

# The guest's /init: say it is up, show what its disk (the clone) holds, write to it, then tick
# once a second so a live migration can be seen not to restart it (the counter goes on).
GUEST_INIT = (
    labvm.INIT_PRELUDE
    + """
echo "GUEST-UP $(arg guest)"
echo "DISK: $(dd if=/dev/vda bs=24 count=1 2>/dev/null)"
echo written-by-guest | dd of=/dev/vda bs=512 seek=2048 conv=notrunc 2>/dev/null && sync
i=0
while true; do i=$((i+1)); echo "tick $i"; sleep 1; done
"""
)


@dataclass
class Hv:
    info: HypervisorInfo
    daemon: Libvirtd
    host: Host


def hypervisor(lab: Lab, workdir: Path, name: str, index: int, segments: dict, prefix: str = "10.10.0") -> Hv:
    """A lab host with bridges fe0/be0 (each enslaving a veth to its lab segment), address
    <prefix>.1<index> on fe0 for migration traffic, and its own libvirtd."""
    host = lab.host(name)
    for n, (br, seg) in enumerate(segments.items()):
        bridge(lab, host, seg, br, f"02:b5:00:00:{index:02x}:{n:02x}")
    address = f"{prefix}.{10 + index}"
    host.run(["ip", "addr", "add", f"{address}/24", "dev", "fe0"])
    daemon = Libvirtd(host, workdir / name, name).start()
    info = HypervisorInfo(name, "odd", daemon.uri, cpus=2, memory_mib=16384, address=address)
    return Hv(info, daemon, host)


def bridge(lab: Lab, host: Host, segment: Segment, name: str, mac: str) -> None:
    """Bridge `name` in `host` with a veth uplink to `segment`, both with `mac`.

    The bridge's MAC is set, as the install profile sets it (bridge_hw). Left alone, a Linux
    bridge takes its lowest port MAC: a random veth MAC above fe:54:... then gives way to the tap
    of an incoming guest (libvirt names taps fe:54:00:<guest>), which is also the MAC of that
    guest's tap on the source hypervisor, and the source's bridge drops every reply as coming
    from its own address. Live migration then failed with "No route to host" (3 of 39 runs of
    the migration tests here)."""
    up = lab.plug(host, segment, f"up-{name}", mac=mac)
    host.run(["ip", "link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    host.run(["ip", "link", "set", up, "master", name])
    host.run(["ip", "link", "set", name, "address", mac, "up"])


def settings(storage_dir: Path, **changes) -> GuestSettings:
    plans = {
        "public": AddressPlan(
            "public", IPv4Network("10.10.0.0/24"), ((IPv4Address("10.10.0.100"), IPv4Address("10.10.0.249")),)
        ),
        "backend": AddressPlan(
            "backend", IPv4Network("10.20.0.0/24"), ((IPv4Address("10.20.0.100"), IPv4Address("10.20.0.249")),)
        ),
    }
    base = dict(
        storage_dir=str(storage_dir),
        virt_type="qemu",
        reserve_mib=512,
        segments={"odd": {"fe0": "public", "be0": "backend"}},
        plans=plans,
    )
    base.update(changes)
    return GuestSettings(**base)


def guests(hvs: list[Hv], storage_dir: Path, bindings=None, **changes) -> Guests:
    conns = Connections()
    g = Guests(
        settings(storage_dir, **changes),
        conns(hvs[0].info),
        MemoryHypervisors([h.info for h in hvs]),
        conns,
        bindings if bindings is not None else MemoryBindings(),
    )
    g.connections = conns
    return g


def master_image(workdir: Path, size_mib: int = 32, data_mib: int = 0) -> Path:
    """A tiny master disk: the marker in its first bytes, then `data_mib` MiB of incompressible
    data (an installed OS stand-in, so that copying it costs what copying an OS costs), as qcow2."""
    raw = workdir / "osol-0811.raw"
    with open(raw, "wb") as f:
        f.write(MARKER)
        f.seek(1 << 20)
        for _ in range(data_mib):
            f.write(os.urandom(1 << 20))
        f.truncate(max(size_mib, data_mib + 2) << 20)
    out = workdir / "osol-0811.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)], check=True)
    raw.unlink()
    return out


def boot_files(workdir: Path) -> tuple[str, str]:
    initrd = labvm.build_initramfs(workdir / "guest-initrd.gz", GUEST_INIT)
    return str(labvm.kernel_path()), str(initrd)


MASTER = VersionRef("osol-0811", "version-01")


def provision(g: Guests, boot: Boot, workdir: Path, progress=None) -> tuple[GuestRef, Path, HypervisorInfo]:
    """The original domu workflow for one guest, appl-1:vm-1: import a tiny master into
    `masters` and freeze version-01 (domu-project/clone need them), create project appl-1, clone
    the version, define an hvm fe-be guest of 256 MiB on segment odd with its serial console
    logged. Returns the guest, its console log and the hypervisor placement chose."""
    g.import_image(MASTER.image, master_image(workdir), progress=progress)
    g.freeze(MASTER.image, MASTER.version)
    g.create_project("appl-1")
    ref = GuestRef("appl-1", "vm-1")
    g.clone(MASTER, ref)
    console = workdir / "vm-1.console"
    host, _facts, _placement = g.init("hvm", "fe-be", "odd", 256, 1, ref, boot, console_log=str(console))
    return ref, console, host
