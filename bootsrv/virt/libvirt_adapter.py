"""The libvirt adapter: the ONLY module of bootsrv that imports libvirt.

`LibvirtHost` implements `Storage` and `Hypervisor` (bootsrv.virt.provisioner) over one libvirt
connection. Projects are `dir` storage pools (one per project) whose directories live on the
storage every hypervisor mounts; in production that directory is an NFS export (or use a `netfs`
pool), or a cluster filesystem on an iSCSI LUN (docs/guests.md).

libvirt quirks handled here:
- A clone is created with `createXML` and a `<backingStore>` naming the frozen version, not with
  `createXMLFrom`: that copies the data, and across pools it fails on the test driver.
- `virStorageVolUpload` is not implemented by the test driver; an import there writes the pool
  directory directly (it is a local directory in tests) after creating the volume.
- libvirt prints every error to stderr by default; errors are turned into bootsrv errors instead.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import libvirt

from bootsrv.errors import BootsrvError, Conflict, NotFound
from bootsrv.virt.domain import DomainFacts, facts
from bootsrv.virt.provisioner import Domain, HostView, Progress, Volume

CHUNK = 1 << 20
_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


def _quiet(_ctx, _err) -> None:
    pass


libvirt.registerErrorHandler(_quiet, None)


class LibvirtFailure(BootsrvError):
    """libvirt refused an operation; the message is libvirt's, prefixed with what we asked."""


def _call(what: str, fn, *args):
    try:
        return fn(*args)
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        if code in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL):
            raise NotFound(f"{what}: {exc.get_error_message()}") from None
        if code in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_DOM_EXIST):
            raise Conflict(f"{what}: {exc.get_error_message()}") from None
        raise LibvirtFailure(f"{what}: {exc.get_error_message()}") from None


def volume_xml(name: str, capacity: int, fmt: str, backing: Volume | None = None, readonly: bool = False) -> str:
    parts = [
        f"<volume type='file'><name>{escape(name)}</name>",
        f"<capacity unit='bytes'>{capacity}</capacity>",
        # A clone starts empty: allocation 0 keeps the dir backend from preallocating.
        "<allocation unit='bytes'>0</allocation>",
        f"<target><format type={quoteattr(fmt)}/>",
    ]
    if readonly:
        parts.append("<permissions><mode>0444</mode></permissions>")
    parts.append("</target>")
    if backing is not None:
        parts.append(
            f"<backingStore><path>{escape(backing.path)}</path>"
            f"<format type={quoteattr(backing.format)}/></backingStore>"
        )
    parts.append("</volume>")
    return "".join(parts)


def _volume(project: str, vol) -> Volume:
    root = ET.fromstring(vol.XMLDesc(0))
    fmt = root.find("./target/format")
    backing = root.findtext("./backingStore/path")
    _, capacity, allocation = vol.info()
    return Volume(
        project,
        vol.name(),
        vol.path(),
        fmt.get("type", "raw") if fmt is not None else "raw",
        capacity,
        allocation,
        backing or None,
    )


class LibvirtHost:
    def __init__(self, uri: str, conn=None):
        self.uri = uri
        self.conn = conn if conn is not None else _call(f"connect {uri}", libvirt.open, uri)

    def close(self) -> None:
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass

    # -- Storage ---------------------------------------------------------------------------------

    def projects(self) -> dict[str, str]:
        out = {}
        for pool in self.conn.listAllStoragePools(0):
            path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path")
            if path:
                out[pool.name()] = path
        return out

    def _pool(self, project: str):
        pool = _call(f"project {project}", self.conn.storagePoolLookupByName, project)
        if not pool.isActive():
            _call(f"start pool {project}", pool.create, 0)
        return pool

    def create_project(self, name: str, directory: str) -> None:
        xml = f"<pool type='dir'><name>{escape(name)}</name><target><path>{escape(directory)}</path></target></pool>"
        pool = _call(f"define pool {name}", self.conn.storagePoolDefineXML, xml, 0)
        try:
            pool.build(0)  # mkdir (no-op when it exists on the shared storage already)
        except libvirt.libvirtError:
            pass
        _call(f"start pool {name}", pool.create, 0)
        try:
            pool.setAutostart(1)
        except libvirt.libvirtError:
            pass

    def add_project(self, name: str, directory: str) -> None:
        have = self.projects()
        if have.get(name) == directory:
            self._pool(name)
            return
        if name in have:
            raise Conflict(f"project: {self.uri} has a pool {name!r} at {have[name]}, not {directory}")
        self.create_project(name, directory)

    def volumes(self, project: str) -> list[Volume]:
        pool = self._pool(project)
        try:
            pool.refresh(0)  # files another hypervisor created on the shared storage
        except libvirt.libvirtError:
            pass
        return sorted((_volume(project, v) for v in pool.listAllVolumes(0)), key=lambda v: v.name)

    def create_volume(
        self, project: str, name: str, capacity: int, fmt: str, backing: Volume | None = None, readonly: bool = False
    ) -> Volume:
        pool = self._pool(project)
        vol = _call(f"create {project}/{name}", pool.createXML, volume_xml(name, capacity, fmt, backing, readonly), 0)
        return _volume(project, vol)

    def import_volume(
        self, project: str, name: str, source: Path, fmt: str, progress: Progress | None = None
    ) -> Volume:
        from bootsrv.virt.guests import image_format

        _, capacity = image_format(source)
        total = source.stat().st_size
        vol = self.create_volume(project, name, capacity, fmt)
        handle = _call(f"volume {name}", self._pool(project).storageVolLookupByName, name)
        try:
            stream = self.conn.newStream(0)
            handle.upload(stream, 0, total, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise LibvirtFailure(f"upload {project}/{name}: {exc.get_error_message()}") from None
            stream = None
        done = 0
        with open(source, "rb") as src:
            if stream is None:  # test driver: write the pool directory ourselves
                with open(vol.path, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        dst.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            else:
                try:
                    while chunk := src.read(CHUNK):
                        _send(stream, chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
                    stream.finish()
                except libvirt.libvirtError as exc:
                    stream.abort()
                    raise LibvirtFailure(f"upload {project}/{name}: {exc.get_error_message()}") from None
        return _volume(project, handle)

    def copy_volume(self, source: Volume, name: str, readonly: bool = False) -> Volume:
        pool = self._pool(source.project)
        src = _call(f"volume {source.project}/{source.name}", pool.storageVolLookupByName, source.name)
        xml = volume_xml(name, source.capacity, source.format, None, readonly)
        vol = _call(f"copy {source.name} to {name}", pool.createXMLFrom, xml, src, 0)
        return _volume(source.project, vol)

    def delete_volume(self, project: str, name: str) -> None:
        vol = _call(f"volume {project}/{name}", self._pool(project).storageVolLookupByName, name)
        _call(f"delete {project}/{name}", vol.delete, 0)

    # -- Hypervisor ------------------------------------------------------------------------------

    def define(self, xml: str) -> DomainFacts:
        dom = _call("define", self.conn.defineXML, xml)
        return facts(dom.XMLDesc(0))

    def domains(self) -> list[Domain]:
        return [Domain(facts(d.XMLDesc(0)), _STATES.get(d.state()[0], "unknown")) for d in self.conn.listAllDomains(0)]

    def control(self, name: str, action: str) -> None:
        dom = _call(f"guest {name}", self.conn.lookupByName, name)
        # Checked here for one clear message: drivers report these with different error codes.
        if action == "start" and dom.isActive():
            raise Conflict(f"guest: {name} is already running")
        if action in ("shutdown", "destroy") and not dom.isActive():
            raise Conflict(f"guest: {name} is not running")
        if action == "undefine" and dom.isActive():
            raise Conflict(f"guest: {name} is running; stop it first")
        if action == "start":
            _call(f"start {name}", dom.create)
        elif action == "shutdown":
            _call(f"shutdown {name}", dom.shutdown)
        elif action == "destroy":
            _call(f"power off {name}", dom.destroy)
        elif action == "undefine":
            _call(f"undefine {name}", dom.undefine)
        else:
            raise ValueError(action)

    def view(self) -> HostView:
        free = self.conn.getFreeMemory() // (1024 * 1024)
        bridges: set[str] = set()
        networks: set[str] = set()
        for net in self.conn.listAllNetworks(0):
            if net.isActive():
                networks.add(net.name())
                try:
                    bridges.add(net.bridgeName())
                except libvirt.libvirtError:
                    pass
        try:
            for iface in self.conn.listAllInterfaces(0):
                if ET.fromstring(iface.XMLDesc(0)).get("type") == "bridge":
                    bridges.add(iface.name())
        except libvirt.libvirtError:
            pass  # no interface driver on this hypervisor: only network bridges are known
        return HostView(int(free), frozenset(bridges), frozenset(networks))

    def sees(self, path: str) -> bool:
        for pool in self.conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            target = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path")
            if target and os.path.dirname(path) == target.rstrip("/"):
                try:
                    pool.refresh(0)
                    pool.storageVolLookupByName(os.path.basename(path))
                    return True
                except libvirt.libvirtError:
                    return False
        return False

    def migrate(self, name: str, destination: LibvirtHost, address: str = "", unsafe: bool = False) -> None:
        dom = _call(f"guest {name}", self.conn.lookupByName, name)
        if not dom.isActive():
            # Nothing runs: moving the definition is the whole migration.
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
            _call(f"define {name} on destination", destination.conn.defineXML, xml)
            _call(f"undefine {name}", dom.undefine)
            return
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        if unsafe:
            # libvirt only trusts NFS/GFS2/... as shared; a shared directory it cannot recognise
            # (the lab's one filesystem seen from two namespaces) needs this explicit override.
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        uri = f"tcp://{address}" if address else None
        _call(f"migrate {name}", dom.migrate, destination.conn, flags, None, uri, 0)


def _send(stream, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        sent = stream.send(view.tobytes())
        if sent < 0:
            raise LibvirtFailure("upload: stream refused data")
        view = view[sent:]


class Connections:
    """One LibvirtHost per URI for the life of a command (libvirt connections are costly)."""

    def __init__(self) -> None:
        self._hosts: dict[str, LibvirtHost] = {}

    def __call__(self, host) -> LibvirtHost:
        uri = host if isinstance(host, str) else host.uri
        if uri not in self._hosts:
            self._hosts[uri] = LibvirtHost(uri)
        return self._hosts[uri]

    def close(self) -> None:
        for h in self._hosts.values():
            h.close()
        self._hosts.clear()
