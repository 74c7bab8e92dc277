"""The guest use cases (the original domu-* scripts and virsh steps) over the virt interfaces.

No libvirt, no click: `Guests` takes the shared `Storage`, a `HypervisorSource`, a way to reach
each hypervisor (`connect`), the lease-store `Bindings` and the settings. Every command checks all
of its input before it changes anything, and names the field that is wrong.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bootsrv.errors import Conflict, InvalidInput, NotFound
from bootsrv.values import normalize_hostname
from bootsrv.virt import domain as domainmod
from bootsrv.virt.bindings import Binding, Bindings, check_hostname_free, choose_address, require_network
from bootsrv.virt.domain import DomainFacts, DomainSpec, check_request
from bootsrv.virt.hosts import HypervisorSource
from bootsrv.virt.names import MASTERS, GuestRef, VersionRef, check_name
from bootsrv.virt.placement import HostLoad, HypervisorInfo, Placement, place, require
from bootsrv.virt.provisioner import Domain, Hypervisor, Progress, Storage, Volume
from bootsrv.virt.settings import GuestSettings, check_nic_name

QCOW2_MAGIC = b"QFI\xfb"


@dataclass(frozen=True)
class Located:
    host: HypervisorInfo
    hypervisor: Hypervisor
    domain: Domain


@dataclass(frozen=True)
class Image:
    volume: Volume
    versions: tuple[Volume, ...]


@dataclass(frozen=True)
class Boot:
    """Direct kernel boot for a guest (the lab's tiny guests; PV guests without pygrub)."""

    kernel: str
    initrd: str | None = None
    cmdline: str = ""


class MigrationRefused(Conflict):
    def __init__(self, guest: GuestRef, destination: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"migrate: {guest} cannot move to {destination}:\n{lines}")


def image_format(path: Path) -> tuple[str, int]:
    """("qcow2", virtual size) from a qcow2 header (QEMU docs/interop/qcow2.txt: magic, size at
    offset 24, big-endian), else ("raw", file size)."""
    with open(path, "rb") as f:
        head = f.read(32)
    if head[:4] == QCOW2_MAGIC and len(head) >= 32:
        return "qcow2", int.from_bytes(head[24:32], "big")
    return "raw", path.stat().st_size


class Guests:
    def __init__(
        self,
        settings: GuestSettings,
        storage: Storage,
        hypervisors: HypervisorSource,
        connect: Callable[[HypervisorInfo], Hypervisor],
        bindings: Bindings | None = None,
        templates_dir: Path | None = None,
    ):
        self.connections = None  # the connection cache of `connect`, when the caller has one to close
        self.settings = settings
        self.storage = storage
        self.source = hypervisors
        self.connect = connect
        self.bindings = bindings
        self.templates_dir = templates_dir

    # -- projects and images -------------------------------------------------------------------

    def create_project(self, name: str) -> str:
        check_name(name, "project")
        if name in self.storage.projects():
            raise Conflict(f"project: {name!r} exists")
        directory = os.path.join(self.settings.storage_dir, name)
        self.storage.create_project(name, directory)
        # Every hypervisor gets the project as a pool too, so it sees the disks (live migration).
        for host in self.source.hypervisors():
            try:
                self.connect(host).add_project(name, directory)
            except Exception:  # an unreachable hypervisor gets it when a guest is placed there
                pass
        return directory

    def _project(self, name: str, field: str = "project") -> str:
        projects = self.storage.projects()
        if name not in projects:
            raise NotFound(f"{field}: no project {name!r} (create it with `domu-project {name}`)")
        return projects[name]

    def _volume(self, project: str, name: str) -> Volume | None:
        return next((v for v in self.storage.volumes(project) if v.name == name), None)

    def import_image(self, name: str, source: Path, progress: Progress | None = None) -> Volume:
        check_name(name, "image")
        if not source.is_file():
            raise NotFound(f"file: {source} is not a readable file")
        if MASTERS not in self.storage.projects():
            self.create_project(MASTERS)
        if self._volume(MASTERS, name) is not None:
            raise Conflict(f"image: {MASTERS}/{name} exists")
        fmt, _ = image_format(source)
        return self.storage.import_volume(MASTERS, name, source, fmt, progress)

    def freeze(self, image: str, version: str) -> Volume:
        """`image@version`: a read-only copy of the image as it is now; never written again."""
        check_name(image, "image")
        check_name(version, "version")
        self._project(MASTERS)
        vol = self._volume(MASTERS, image)
        if vol is None:
            raise NotFound(f"image: no image {MASTERS}/{image}")
        frozen = VersionRef(image, version)
        if self._volume(MASTERS, frozen.volume) is not None:
            raise Conflict(f"version: {frozen} exists; versions are immutable, freeze a new one")
        return self.storage.copy_volume(vol, frozen.volume, readonly=True)

    def images(self) -> list[Image]:
        if MASTERS not in self.storage.projects():
            return []
        vols = self.storage.volumes(MASTERS)
        out = []
        for v in vols:
            if "@" not in v.name:
                out.append(Image(v, tuple(x for x in vols if x.name.startswith(v.name + "@"))))
        return out

    def _version(self, ref: VersionRef) -> Volume:
        self._project(MASTERS, "version")
        vols = {v.name: v for v in self.storage.volumes(MASTERS)}
        if ref.image not in vols and not any(n.startswith(ref.image + "@") for n in vols):
            raise NotFound(f"version.image: no image {MASTERS}/{ref.image}")
        if ref.volume not in vols:
            known = sorted(n.split("@", 1)[1] for n in vols if n.startswith(ref.image + "@"))
            raise NotFound(
                f"version.version: {ref.image} has no version {ref.version!r} (frozen: {', '.join(known) or 'none'})"
            )
        return vols[ref.volume]

    # -- clone and define ------------------------------------------------------------------------

    def clone(self, version: VersionRef, guest: GuestRef) -> Volume:
        """A qcow2 overlay whose backing store is the frozen version: ~0 bytes until the guest writes."""
        base = self._version(version)
        self._project(guest.project, "guest.project")
        if self._volume(guest.project, guest.vm) is not None:
            raise Conflict(f"guest.vm: {guest.disk} exists")
        return self.storage.create_volume(guest.project, guest.vm, base.capacity, "qcow2", backing=base)

    def loads(self) -> list[HostLoad]:
        out = []
        for host in self.source.hypervisors():
            try:
                doms = self.connect(host).domains()
            except Exception as exc:  # noqa: BLE001 - the reason is shown, the host is skipped
                out.append(HostLoad(host, error=str(exc).splitlines()[0][:120]))
                continue
            # A defined guest holds its slot and its memory whether it runs or not.
            out.append(HostLoad(host, len(doms), sum(d.facts.memory_mib for d in doms)))
        return out

    def plan(
        self,
        kind: str,
        layout: str,
        segment: str,
        memory_mib: int,
        vcpus: int,
        guest: GuestRef,
        boot: Boot | None = None,
    ) -> tuple[Placement, DomainSpec]:
        """Everything `init` checks and decides, without changing anything (`--dry-run`)."""
        check_request(kind, layout, memory_mib, vcpus)
        nics = self.settings.nics(segment, layout)
        self._project(guest.project, "guest.project")
        disk = self._volume(guest.project, guest.vm)
        if disk is None:
            raise NotFound(
                f"guest: no disk {guest.disk}; clone one first (domu-clone masters/<image>@<version> {guest.disk})"
            )
        if self.find(guest) is not None:
            raise Conflict(f"guest.vm: domain {guest.domain} is already defined")
        spec = DomainSpec(
            guest=guest,
            kind=kind,
            layout=layout,
            segment=segment,
            memory_mib=memory_mib,
            vcpus=vcpus,
            disk_path=disk.path,
            disk_format=disk.format,
            nics=nics,
            virt_type=self.settings.virt_type,
            kernel=boot.kernel if boot else None,
            initrd=boot.initrd if boot else None,
            cmdline=boot.cmdline if boot else "",
        )
        placement = place(segment, memory_mib, self.loads(), self.settings.guests_per_host, self.settings.reserve_mib)
        return placement, spec

    def init(
        self,
        kind: str,
        layout: str,
        segment: str,
        memory_mib: int,
        vcpus: int,
        guest: GuestRef,
        boot: Boot | None = None,
        console_log: str | None = None,
    ) -> tuple[HypervisorInfo, DomainFacts, Placement]:
        placement, spec = self.plan(kind, layout, segment, memory_mib, vcpus, guest, boot)
        host = require(segment, placement)
        if console_log:
            spec = dataclasses.replace(spec, console_log=console_log)
        xml = domainmod.render(spec, self.templates_dir)
        hv = self.connect(host)
        hv.add_project(guest.project, self._project(guest.project))
        return host, hv.define(xml), placement

    # -- finding and controlling guests -----------------------------------------------------------

    def find(self, guest: GuestRef) -> Located | None:
        for host in self.source.hypervisors():
            try:
                hv = self.connect(host)
                doms = hv.domains()
            except Exception:  # noqa: BLE001 - unreachable hosts are reported by `list`
                continue
            for d in doms:
                if d.facts.name == guest.domain:
                    return Located(host, hv, d)
        return None

    def locate(self, guest: GuestRef) -> Located:
        found = self.find(guest)
        if found is None:
            raise NotFound(f"guest: no domain {guest.domain} on any hypervisor of the pool")
        return found

    def all(self) -> list[tuple[HypervisorInfo, Domain | None, str]]:
        rows: list[tuple[HypervisorInfo, Domain | None, str]] = []
        for host in self.source.hypervisors():
            try:
                doms = self.connect(host).domains()
            except Exception as exc:  # noqa: BLE001
                rows.append((host, None, str(exc).splitlines()[0][:120]))
                continue
            rows.extend((host, d, "") for d in sorted(doms, key=lambda d: d.facts.name))
        return rows

    def control(self, guest: GuestRef, action: str) -> Located:
        found = self.locate(guest)
        found.hypervisor.control(guest.domain, action)
        return found

    # -- addresses ----------------------------------------------------------------------------------

    def assign_ip(self, guest: GuestRef, nic: str, hostname: str, address: str | None = None) -> Binding:
        check_nic_name(nic)
        hostname = normalize_hostname(hostname)
        if self.bindings is None:
            raise NotFound("store: no lease store configured")
        found = self.locate(guest)
        the_nic = found.domain.facts.nic(nic)
        if not the_nic.mac:
            raise NotFound(
                f"nic: {guest.domain} has no MAC on {nic} (its definition has no interface on {the_nic.source})"
            )
        plan = require_network(self.settings.plans, the_nic.network)
        used = {name: self.bindings.used(name) for name in self.settings.plans}
        for u in used[plan.name]:
            if u.client == the_nic.mac:
                raise Conflict(f"nic: {guest.domain} {nic} ({the_nic.mac}) already has {u.ip} on {plan.name!r}")
        check_hostname_free(hostname, used, the_nic.mac)
        ip = choose_address(plan, used[plan.name], address)
        binding = Binding(plan.name, ip, the_nic.mac, hostname, comment=f"guest {guest.domain} {nic}")
        self.bindings.bind(binding)
        return binding

    # -- destroy and migrate ----------------------------------------------------------------------------

    def destroy(self, guest: GuestRef) -> list[str]:
        """Power off, remove the bindings of its NICs, undefine, delete its clone. Returns what was done."""
        done = []
        found = self.find(guest)
        if found is not None:
            f = found.domain.facts
            if found.domain.state == "running":
                found.hypervisor.control(guest.domain, "destroy")
                done.append(f"powered off {guest.domain} on {found.host.name}")
            if self.bindings is not None:
                for nic in f.nics:
                    if nic.mac:
                        for ip in self.bindings.unbind(nic.network, nic.mac):
                            done.append(f"unbound {nic.name} {nic.mac} {ip} on {nic.network}")
            found.hypervisor.control(guest.domain, "undefine")
            done.append(f"undefined {guest.domain} on {found.host.name}")
        if guest.project in self.storage.projects() and self._volume(guest.project, guest.vm) is not None:
            self.storage.delete_volume(guest.project, guest.vm)
            done.append(f"deleted clone {guest.disk}")
        if not done:
            raise NotFound(f"guest: no domain {guest.domain} and no disk {guest.disk}")
        return done

    def preflight(
        self, guest: GuestRef, destination: str
    ) -> tuple[Located, HypervisorInfo, Hypervisor | None, list[str]]:
        """Everything that would stop the migration, each naming its check; [] when it can go."""
        found = self.locate(guest)
        hosts = {h.name: h for h in self.source.hypervisors()}
        if destination not in hosts:
            raise NotFound(f"destination: no hypervisor {destination!r} in the pool")
        if destination == found.host.name:
            raise InvalidInput("destination", f"{guest.domain} is already on {destination}")
        dest = hosts[destination]
        problems = []
        if not dest.accepts_guests:
            problems.append(f"state: {destination} is {dest.state!r} and takes no guests")
        try:
            dhv = self.connect(dest)
            view = dhv.view()
        except Exception as exc:  # noqa: BLE001
            return found, dest, None, [f"libvirt: cannot reach {destination}: {str(exc).splitlines()[0]}"]
        f = found.domain.facts
        for path in f.disks:
            if not dhv.sees(path):
                problems.append(
                    f"disk: {path} is not on storage {destination} sees (no pool there holds it;"
                    f" is the shared storage mounted and the project defined there?)"
                )
        for nic in f.nics:
            present = view.bridges if nic.attach == "bridge" else view.networks
            if nic.source not in present:
                kind = "bridge" if nic.attach == "bridge" else "libvirt network"
                problems.append(
                    f"nic {nic.name}: {kind} {nic.source!r} does not exist on {destination}"
                    f" (has: {', '.join(sorted(present)) or 'none'})"
                )
        if view.free_memory_mib < f.memory_mib:
            problems.append(
                f"memory: {destination} has {view.free_memory_mib} MiB free, {guest.domain} needs {f.memory_mib} MiB"
            )
        return found, dest, dhv, problems

    def migrate(self, guest: GuestRef, destination: str, unsafe: bool = False) -> Located:
        found, dest, dhv, problems = self.preflight(guest, destination)
        if problems or dhv is None:
            raise MigrationRefused(guest, destination, problems)
        found.hypervisor.migrate(guest.domain, dhv, address=dest.address, unsafe=unsafe)
        return Located(dest, dhv, found.domain)
