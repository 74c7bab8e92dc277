"""Domain XML rendered from templates/domains, compared with golden files.

Regenerate after an intended template change: BOOTSRV_REGEN_GOLDEN=1 pytest tests/virt/test_domain.py
"""

import dataclasses
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bootsrv.errors import InvalidInput
from bootsrv.virt import domain
from bootsrv.virt.domain import DomainSpec, Nic
from bootsrv.virt.names import GuestRef

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("BOOTSRV_REGEN_GOLDEN") == "1"
NICS = {"fe0": Nic("fe0", "public", "bridge", "fe0"), "be0": Nic("be0", "backend", "bridge", "be0")}


def spec(kind="hvm", layout="fe-be", **changes) -> DomainSpec:
    base = dict(
        guest=GuestRef("appl-1", "vm-1"),
        kind=kind,
        layout=layout,
        segment="odd",
        memory_mib=1024,
        vcpus=1,
        disk_path="/srv/guests/appl-1/vm-1",
        nics=tuple(NICS[n] for n in domain.LAYOUTS[layout]),
    )
    base.update(changes)
    return DomainSpec(**base)


CASES = {
    "pv-fe-be": spec("pv", "fe-be"),
    "pv-fe": spec("pv", "fe"),
    "hvm-fe-be": spec("hvm", "fe-be"),
    "hvm-be": spec("hvm", "be", memory_mib=2048, vcpus=2),
    "hvm-qemu-kernel": spec(
        "hvm",
        "fe",
        virt_type="qemu",
        kernel="/boot/vmlinuz",
        initrd="/boot/initrd.img",
        cmdline="console=ttyS0",
        console_log="/var/log/vm-1.console",
    ),
    "hvm-network": spec(
        "hvm", "fe-be", nics=(Nic("fe0", "public", "network", "public"), Nic("be0", "backend", "network", "backend"))
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_golden(name):
    text = domain.render(CASES[name])
    path = GOLDEN / f"{name}.xml"
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs (BOOTSRV_REGEN_GOLDEN=1 after an intended change)"


@pytest.mark.parametrize("name", CASES)
def test_facts_read_back_what_was_rendered(name):
    s = CASES[name]
    f = domain.facts(domain.render(s))
    assert (f.name, f.memory_mib, f.vcpus, f.disks) == (s.guest.domain, s.memory_mib, s.vcpus, (s.disk_path,))
    assert (f.guest, f.kind, f.layout, f.segment) == (s.guest, s.kind, s.layout, s.segment)
    assert [(n.name, n.network, n.source) for n in f.nics] == [(n.name, n.network, n.source) for n in s.nics]
    assert f.virt_type == ("xen" if s.kind == "pv" else s.virt_type)


def test_mac_assigned_by_libvirt_is_matched_to_its_nic():
    root = ET.fromstring(domain.render(spec()))
    for i, iface in enumerate(root.findall("./devices/interface")):
        iface.insert(0, ET.Element("mac", address=f"52:54:00:00:00:0{i}"))
    f = domain.facts(ET.tostring(root, encoding="unicode"))
    assert (f.nic("fe0").mac, f.nic("be0").mac) == ("52:54:00:00:00:00", "52:54:00:00:00:01")
    with pytest.raises(InvalidInput) as err:
        f.nic("eth0")
    assert err.value.field == "nic" and "fe0, be0" in str(err.value)


def test_names_are_escaped():
    s = spec(disk_path="/srv/a'b&c")
    root = ET.fromstring(domain.render(s))
    assert root.find("./devices/disk/source").get("file") == "/srv/a'b&c"


@pytest.mark.parametrize(
    "changes,field",
    [
        (dict(kind="xen"), "kind"),
        (dict(layout="fe-fe"), "layout"),
        (dict(memory_mib=16), "memory"),
        (dict(memory_mib="1024"), "memory"),
        (dict(vcpus=0), "vcpus"),
        (dict(vcpus=1000), "vcpus"),
        (dict(virt_type="lxc"), "virt_type"),
        (dict(nics=(NICS["fe0"],)), "nics"),
    ],
    ids=["kind", "layout", "memory-small", "memory-str", "vcpus-0", "vcpus-big", "virt-type", "nics-vs-layout"],
)
def test_bad_spec(changes, field):
    base = dataclasses.asdict(spec())
    base.update(changes)
    base["guest"] = GuestRef("appl-1", "vm-1")
    if "nics" not in changes:
        base["nics"] = spec().nics
    with pytest.raises(InvalidInput) as err:
        DomainSpec(**base)
    assert err.value.field == field
