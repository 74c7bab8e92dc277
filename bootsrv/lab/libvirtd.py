"""libvirtd + virtlogd started by hand inside a lab host (tests, benchmark, demo; never systemd).

Each `Libvirtd` runs in its lab host's network namespace plus a private mount and UTS namespace
(`unshare -m -u`): tmpfs over /run, /var/lib, /var/log and /var/cache, with its own directories
bound at /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and /etc/libvirt.
So two daemons on one machine share nothing (state, pid files, sockets, host UUID, host name), and
nothing outside the work directory is created or changed. Clients reach it through its socket in
the work directory: `qemu+unix:///system?socket=<workdir>/run/libvirt-sock`.

qemu runs as root (qemu.conf `user = "root"`) without cgroups, namespaces or a security driver:
there is no systemd-machined here, and the lab is the isolation.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LIBVIRTD_CONF = """\
# Written by bootsrv.lab.libvirtd for one lab daemon.
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "{host_uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

QEMU_CONF = """\
# Written by bootsrv.lab.libvirtd: qemu as root, no cgroups (no systemd-machined), no private /dev.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
stdio_handler = "logd"
"""

VIRTLOGD_CONF = """\
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
"""

MOUNTS = ("/run", "/var/lib", "/var/log", "/var/cache")
BINDS = {
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
    "etc": "/etc/libvirt",
}


@dataclass
class Libvirtd:
    host: object  # bootsrv.lab.Host
    workdir: Path
    hostname: str
    host_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    proc: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    def script(self) -> str:
        lines = ["set -e", f"hostname {shlex.quote(self.hostname)}"]
        lines += [f"mount -t tmpfs tmpfs {m}" for m in MOUNTS]
        # libvirt's qemu driver resolves its built-in default user (libvirt-qemu) before it reads
        # qemu.conf and fails when that user does not exist (it comes with libvirt-daemon-system,
        # which we do not install: it would start the daemons under systemd). Our namespace sees
        # passwd/group files with that user added; the real ones are left alone.
        for name in ("passwd", "group"):
            lines.append(f"mount --bind {shlex.quote(str(self.workdir / name))} /etc/{name}")
        for sub, target in BINDS.items():
            lines.append(f"mkdir -p {target}")
            lines.append(f"mount --bind {shlex.quote(str(self.workdir / sub))} {target}")
        lines.append("virtlogd --daemon --pid-file /run/libvirt/virtlogd.pid --config /etc/libvirt/virtlogd.conf")
        lines.append("exec libvirtd --pid-file /run/libvirt/libvirtd.pid --config /etc/libvirt/libvirtd.conf")
        return "\n".join(lines)

    def start(self, timeout: float = 30) -> Libvirtd:
        for sub in BINDS:
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        etc = self.workdir / "etc"
        (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(host_uuid=self.host_uuid))
        (etc / "qemu.conf").write_text(QEMU_CONF)
        (etc / "virtlogd.conf").write_text(VIRTLOGD_CONF)
        (etc / "libvirt.conf").write_text("")
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        if "\nlibvirt-qemu:" not in "\n" + passwd:
            passwd += "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n"
        for g in ("libvirt-qemu:x:64055:", "kvm:x:64056:", "libvirt:x:64057:"):
            if "\n" + g.split(":")[0] + ":" not in "\n" + group:
                group += g + "\n"
        (self.workdir / "passwd").write_text(passwd)
        (self.workdir / "group").write_text(group)
        log = open(self.workdir / "daemon.out", "wb")
        argv = ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", self.script()]
        self.proc = self.host.popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"libvirtd in {self.hostname} exited {self.proc.returncode}: "
                    f"{(self.workdir / 'daemon.out').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        raise TimeoutError(f"libvirtd in {self.hostname}: no socket {self.socket} after {timeout} s")

    def pids(self) -> list[int]:
        """libvirtd, virtlogd and every qemu it runs (their pid files in our run directory)."""
        out = []
        for pidfile in sorted((self.workdir / "run").rglob("*.pid")):
            try:
                out.append(int(pidfile.read_text().strip()))
            except (OSError, ValueError):
                pass
        return out

    def stop(self) -> None:
        """By PID: SIGKILL the lab's qemu guests, then SIGTERM (SIGKILL after 5 s) the daemons."""
        pids = self.pids()
        daemons = [p for p in pids if _comm(p) in ("libvirtd", "virtlogd")]
        guests = [p for p in pids if p not in daemons]
        for pid in guests:
            _signal(pid, signal.SIGKILL)
        _wait_gone(guests, 5)
        for pid in daemons:
            _signal(pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)  # libvirtd is our child (sh exec'd it): reap it
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        _wait_gone(daemons, 5)
        for pid in daemons:
            _signal(pid, signal.SIGKILL)


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
