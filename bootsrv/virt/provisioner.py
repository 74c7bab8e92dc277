"""The interfaces guest provisioning is written against, and their in-memory versions.

`Storage` is the shared storage every hypervisor reaches (projects, master images, frozen
versions, clones); `Hypervisor` is one hypervisor's libvirt (domains, what it can see,
migration). Together they are the provisioner; `bootsrv.virt.libvirt_adapter.LibvirtHost`
implements both over one libvirt connection, `MemoryStorage`/`MemoryHypervisor` here implement
them in process for tests of the use cases and for the benchmark's reference run.
"""

from __future__ import annotations

import dataclasses
import os
import uuid as uuidmod
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bootsrv.errors import Conflict, NotFound
from bootsrv.virt.domain import DomainFacts, facts

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class Volume:
    project: str
    name: str
    path: str
    format: str  # "qcow2" | "raw"
    capacity: int  # bytes the guest sees
    allocation: int  # bytes used on the storage
    backing: str | None = None  # path of the backing file (a clone's frozen version)


@dataclass(frozen=True)
class Domain:
    facts: DomainFacts
    state: str  # "running" | "shut off" | "paused" | ...


@dataclass(frozen=True)
class HostView:
    """What a hypervisor can see, for migration pre-flight checks."""

    free_memory_mib: int
    bridges: frozenset[str]  # host bridges present (fe0, be0)
    networks: frozenset[str]  # libvirt networks defined and active


class Storage(Protocol):
    def projects(self) -> dict[str, str]:
        """Project name -> its directory on the shared storage."""

    def create_project(self, name: str, directory: str) -> None: ...

    def volumes(self, project: str) -> list[Volume]: ...

    def create_volume(
        self, project: str, name: str, capacity: int, fmt: str, backing: Volume | None = None, readonly: bool = False
    ) -> Volume:
        """A new empty volume, or (with `backing`) a qcow2 overlay of it: a clone."""

    def import_volume(
        self, project: str, name: str, source: Path, fmt: str, progress: Progress | None = None
    ) -> Volume: ...

    def copy_volume(self, source: Volume, name: str, readonly: bool = False) -> Volume: ...

    def delete_volume(self, project: str, name: str) -> None: ...


class Hypervisor(Protocol):
    def define(self, xml: str) -> DomainFacts: ...

    def domains(self) -> list[Domain]: ...

    def control(self, name: str, action: str) -> None:
        """`action`: start | shutdown | destroy (power off) | undefine."""

    def add_project(self, name: str, directory: str) -> None:
        """Make a project's directory on the shared storage one of this hypervisor's pools (idempotent)."""

    def view(self) -> HostView: ...

    def sees(self, path: str) -> bool:
        """Does this hypervisor reach the file at `path` through one of its storage pools?"""

    def migrate(self, name: str, destination: Hypervisor, address: str = "", unsafe: bool = False) -> None:
        """Live-migrate running domain `name`; `address`: where the destination takes the stream."""


ACTIONS = ("start", "shutdown", "destroy", "undefine")


# ---------------------------------------------------------------------------------------------
# In-memory versions


class MemoryStorage:
    """Volumes as records; a clone's allocation is 0 until written (like a qcow2 overlay)."""

    def __init__(self) -> None:
        self._projects: dict[str, str] = {}
        self._volumes: dict[tuple[str, str], Volume] = {}

    def projects(self) -> dict[str, str]:
        return dict(self._projects)

    def create_project(self, name: str, directory: str) -> None:
        if name in self._projects:
            raise Conflict(f"project: {name!r} exists")
        self._projects[name] = directory

    def _need(self, project: str) -> str:
        if project not in self._projects:
            raise NotFound(f"project: no project {project!r}")
        return self._projects[project]

    def volumes(self, project: str) -> list[Volume]:
        self._need(project)
        return sorted((v for (p, _), v in self._volumes.items() if p == project), key=lambda v: v.name)

    def _add(self, volume: Volume) -> Volume:
        key = (volume.project, volume.name)
        if key in self._volumes:
            raise Conflict(f"volume: {volume.project}/{volume.name} exists")
        self._volumes[key] = volume
        return volume

    def create_volume(
        self, project: str, name: str, capacity: int, fmt: str, backing: Volume | None = None, readonly: bool = False
    ) -> Volume:
        directory = self._need(project)
        return self._add(
            Volume(project, name, os.path.join(directory, name), fmt, capacity, 0, backing.path if backing else None)
        )

    def import_volume(
        self, project: str, name: str, source: Path, fmt: str, progress: Progress | None = None
    ) -> Volume:
        directory = self._need(project)
        size = source.stat().st_size
        if progress:
            progress(size, size)
        return self._add(Volume(project, name, os.path.join(directory, name), fmt, size, size))

    def copy_volume(self, source: Volume, name: str, readonly: bool = False) -> Volume:
        return self._add(dataclasses.replace(source, name=name, path=os.path.join(self._need(source.project), name)))

    def delete_volume(self, project: str, name: str) -> None:
        if self._volumes.pop((project, name), None) is None:
            raise NotFound(f"volume: no volume {project}/{name}")


class MemoryHypervisor:
    """Domains as XML kept in a dict, with a MAC generator, state, and optional visibility rules."""

    def __init__(
        self, free_memory_mib: int = 64 * 1024, bridges=("fe0", "be0"), networks=(), mac_prefix: str = "52:54:00"
    ):
        self.free_memory_mib = free_memory_mib
        self.bridges = frozenset(bridges)
        self.networks = frozenset(networks)
        self.pools: dict[str, str] = {}  # project -> directory
        self._prefix = mac_prefix
        self._domains: dict[str, tuple[str, str]] = {}  # name -> (xml, state)

    def define(self, xml: str) -> DomainFacts:
        root = ET.fromstring(xml)
        name = root.findtext("name", "")
        if name in self._domains:
            raise Conflict(f"domain: {name!r} is already defined")
        if root.find("uuid") is None:
            ET.SubElement(root, "uuid").text = str(uuidmod.uuid4())
        for iface in root.findall("./devices/interface"):
            if iface.find("mac") is None:
                # Random low half like libvirt's generator: MACs must not repeat across hypervisors.
                low = uuidmod.uuid4().bytes[:3]
                mac = ET.Element("mac", address=self._prefix + "".join(f":{b:02x}" for b in low))
                iface.insert(0, mac)
        text = ET.tostring(root, encoding="unicode")
        self._domains[name] = (text, "shut off")
        return facts(text)

    def domains(self) -> list[Domain]:
        return [Domain(facts(xml), state) for xml, state in self._domains.values()]

    def control(self, name: str, action: str) -> None:
        if name not in self._domains:
            raise NotFound(f"guest: no domain {name!r}")
        xml, state = self._domains[name]
        if action == "start":
            if state == "running":
                raise Conflict(f"guest: {name} is already running")
            self._domains[name] = (xml, "running")
        elif action in ("shutdown", "destroy"):
            if state != "running":
                raise Conflict(f"guest: {name} is not running")
            self._domains[name] = (xml, "shut off")
        elif action == "undefine":
            if state == "running":
                raise Conflict(f"guest: {name} is running; stop it first")
            del self._domains[name]
        else:
            raise ValueError(action)

    def view(self) -> HostView:
        used = sum(facts(xml).memory_mib for xml, state in self._domains.values() if state == "running")
        return HostView(self.free_memory_mib - used, self.bridges, self.networks)

    def add_project(self, name: str, directory: str) -> None:
        self.pools[name] = directory

    def sees(self, path: str) -> bool:
        return os.path.dirname(path) in self.pools.values()

    def migrate(self, name: str, destination: Hypervisor, address: str = "", unsafe: bool = False) -> None:
        xml, state = self._domains[name]
        assert isinstance(destination, MemoryHypervisor)
        destination._domains[name] = (xml, state)
        del self._domains[name]
