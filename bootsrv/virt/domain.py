"""Domain XML: render a guest's definition from templates/domains, and read facts back (pure).

`render(spec)` takes values and returns the XML text; `facts(xml)` parses what libvirt returns
(MACs it generated, disks, memory, bootsrv's metadata). Neither touches libvirt.

Kinds (the original `domu-init pv|hvm`):
  pv   Xen paravirt guest (`<domain type='xen'>`, os type `linux`), for Xen hypervisors.
  hvm  fully virtualized guest: `kvm` on a KVM hypervisor, `qemu` (TCG) where there is no KVM.
NIC layouts: fe (Public, NIC fe0), be (Backend, NIC be0), fe-be (both, fe0 first).
"""

from __future__ import annotations

import dataclasses
import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import jinja2

from bootsrv import data
from bootsrv.errors import InvalidInput
from bootsrv.virt.names import GuestRef

KINDS = ("pv", "hvm")
LAYOUTS: dict[str, tuple[str, ...]] = {"fe": ("fe0",), "be": ("be0",), "fe-be": ("fe0", "be0")}
META_NS = "urn:bootsrv:guest:1"
# Limits a request is checked against before anything is created (libvirt would take far more;
# these catch typos such as 1024 vCPUs for 1024 MiB in the positional domu-init syntax).
MAX_MEMORY_MIB = 1024 * 1024
MAX_VCPUS = 256


@dataclass(frozen=True)
class Nic:
    name: str  # the guest-side NIC name the commands use: fe0 / be0
    network: str  # the bootsrv [[networks]] entry it is on (its lease table)
    attach: str  # "bridge": host bridge named `source`; "network": libvirt network named `source`
    source: str
    mac: str | None = None  # None: libvirt generates one (read back with `facts`)


@dataclass(frozen=True)
class DomainSpec:
    guest: GuestRef
    kind: str
    layout: str
    segment: str
    memory_mib: int
    vcpus: int
    disk_path: str
    nics: tuple[Nic, ...]
    disk_format: str = "qcow2"
    virt_type: str = "kvm"  # hvm only: "kvm" or "qemu" (TCG)
    disk_cache: str = "none"
    kernel: str | None = None  # direct kernel boot (hvm), or the PV kernel instead of pygrub
    initrd: str | None = None
    cmdline: str = ""
    console_log: str | None = None

    def __post_init__(self) -> None:
        check_request(self.kind, self.layout, self.memory_mib, self.vcpus)
        if self.virt_type not in ("kvm", "qemu"):
            raise InvalidInput("virt_type", f"{self.virt_type!r} must be kvm or qemu")
        names = tuple(n.name for n in self.nics)
        if names != LAYOUTS[self.layout]:
            raise InvalidInput("nics", f"{names} do not match layout {self.layout!r} {LAYOUTS[self.layout]}")


def check_request(kind: str, layout: str, memory_mib: int, vcpus: int) -> None:
    """The positional arguments of domu-init, each checked with its field name."""
    if kind not in KINDS:
        raise InvalidInput("kind", f"{kind!r} must be one of {', '.join(KINDS)} (pv = Xen paravirt, hvm = KVM)")
    if layout not in LAYOUTS:
        raise InvalidInput("layout", f"{layout!r} must be one of {', '.join(LAYOUTS)}")
    if isinstance(memory_mib, bool) or not isinstance(memory_mib, int) or not 32 <= memory_mib <= MAX_MEMORY_MIB:
        raise InvalidInput("memory", f"{memory_mib!r} MiB must be an integer from 32 to {MAX_MEMORY_MIB}")
    if isinstance(vcpus, bool) or not isinstance(vcpus, int) or not 1 <= vcpus <= MAX_VCPUS:
        raise InvalidInput("vcpus", f"{vcpus!r} must be an integer from 1 to {MAX_VCPUS}")


def default_templates_dir() -> Path:
    """The templates shipped with bootsrv (their domains/ holds the domain XML)."""
    return data.templates_dir()


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: Path) -> jinja2.Environment:
    # Cached per directory: compiling the templates is most of a render otherwise.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir / "domains")),
        undefined=jinja2.StrictUndefined,
        autoescape=True,  # names and paths end up in XML attributes
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(spec: DomainSpec, templates_dir: Path | None = None) -> str:
    directory = templates_dir if templates_dir is not None else default_templates_dir()
    template = _environment(directory).get_template(f"{spec.kind}.xml.j2")
    text = template.render(spec=spec)
    ET.fromstring(text)  # a template edit that breaks the XML fails here, not inside libvirt
    return text


# ---------------------------------------------------------------------------------------------
# Reading back


@dataclass(frozen=True)
class Interface:
    mac: str
    attach: str  # "bridge" | "network"
    source: str


@dataclass(frozen=True)
class DomainFacts:
    name: str
    uuid: str
    virt_type: str
    memory_mib: int
    vcpus: int
    disks: tuple[str, ...]
    interfaces: tuple[Interface, ...]
    guest: GuestRef | None = None  # None: not a bootsrv guest (no metadata)
    kind: str = ""
    layout: str = ""
    segment: str = ""
    nics: tuple[Nic, ...] = ()  # from the metadata, with the MAC libvirt assigned filled in

    def nic(self, name: str) -> Nic:
        for nic in self.nics:
            if nic.name == name:
                return nic
        known = ", ".join(n.name for n in self.nics) or "none"
        raise InvalidInput("nic", f"{self.name} has no NIC {name!r} (it has: {known})")


def facts(xml: str) -> DomainFacts:
    root = ET.fromstring(xml)
    memory = root.find("memory")
    unit = memory.get("unit", "KiB") if memory is not None else "KiB"
    mem = _to_mib(int(memory.text or 0), unit) if memory is not None else 0
    disks = tuple(
        src.get("file") or src.get("dev") or "" for src in root.findall("./devices/disk[@device='disk']/source")
    )
    interfaces = []
    for el in root.findall("./devices/interface"):
        mac = el.find("mac")
        src = el.find("source")
        attach = el.get("type", "")
        source = "" if src is None else (src.get("bridge") or src.get("network") or "")
        interfaces.append(Interface(mac.get("address", "").lower() if mac is not None else "", attach, source))
    base = DomainFacts(
        name=root.findtext("name", ""),
        uuid=root.findtext("uuid", ""),
        virt_type=root.get("type", ""),
        memory_mib=mem,
        vcpus=int(root.findtext("vcpu", "0") or 0),
        disks=disks,
        interfaces=tuple(interfaces),
    )
    meta = root.find(f"./metadata/{{{META_NS}}}guest")
    if meta is None:
        return base
    nics = []
    unmatched = list(base.interfaces)
    for el in meta.findall(f"{{{META_NS}}}nic"):
        nic = Nic(el.get("name", ""), el.get("network", ""), el.get("attach", ""), el.get("source", ""))
        # The n-th interface on that source is the n-th NIC declared for it (layouts never repeat one).
        match = next((i for i in unmatched if i.attach == nic.attach and i.source == nic.source), None)
        if match is not None:
            unmatched.remove(match)
            nic = dataclasses.replace(nic, mac=match.mac)
        nics.append(nic)
    return dataclasses.replace(
        base,
        guest=GuestRef(meta.get("project", ""), meta.get("vm", "")),
        kind=meta.get("kind", ""),
        layout=meta.get("layout", ""),
        segment=meta.get("segment", ""),
        nics=tuple(nics),
    )


def _to_mib(value: int, unit: str) -> int:
    factor = {"b": 1, "bytes": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3}
    return value * factor.get(unit.lower(), 1024) // 1024**2


def bridge_names(spec_or_facts: DomainSpec | DomainFacts) -> tuple[str, ...]:
    return tuple(n.source for n in spec_or_facts.nics)
