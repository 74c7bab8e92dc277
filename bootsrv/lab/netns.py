"""The namespace lab: test and demo topologies built from Linux network namespaces.

A `Lab` owns namespaces named `bsl<pid>-<name>`. A `Segment` is an L2 switch: a namespace holding
a bridge. A `Host` is a namespace whose interfaces are veth ends plugged into segments. A tap on a
segment gives a qemu VM a NIC on that switch (qemu then runs inside the segment's namespace).

Safety (DEVELOPERS.md, network rules): every link is created *inside* a lab namespace
(`ip -n SWITCH link add ... peer ... netns HOST`), so nothing is ever created in, moved through or
bridged to the default namespace and its interfaces. Teardown kills what runs in our namespaces by
PID and deletes them; a lab whose owner process died (crash, SIGKILL) is swept by the next `Lab()`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "bsl"
_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_OWNED = re.compile(rf"^{PREFIX}(\d+)-")


class LabError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def available() -> tuple[bool, str]:
    """Can this process build a lab? (root, iproute2, netns support). Returns (ok, reason)."""
    if os.geteuid() != 0:
        return False, "the namespace lab needs root (ip netns add)"
    if shutil.which("ip") is None:
        return False, "iproute2's `ip` command is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    proc = _ip("netns", "add", probe, check=False)
    if proc.returncode != 0:
        return False, f"cannot create a network namespace: {proc.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return True, ""


def namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a server under `ip netns exec`, its children), for
    benchmarks that pin or measure a server's processes."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                pass  # the task ended meanwhile
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU these processes used so far (/proc/PID/stat fields 14 and 15); a
    process that is gone counts nothing."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _kill_namespace(ns: str) -> None:
    """SIGKILL every process inside `ns` (by PID, as `ip netns pids` lists them), then delete it."""
    for _ in range(5):
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    _ip("netns", "del", ns, check=False)


def sweep_stale() -> list[str]:
    """Remove lab namespaces whose owning process is gone. Returns the names removed."""
    removed = []
    for ns in namespaces():
        m = _OWNED.match(ns)
        if m and not _pid_alive(int(m[1])):
            _kill_namespace(ns)
            removed.append(ns)
    return removed


@dataclass
class Host:
    lab: Lab
    name: str
    ns: str
    interfaces: dict[str, str] = field(default_factory=dict)  # ifname -> "addr/prefix"

    def cmd(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.cmd(argv), capture_output=True, text=True, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise LabError(f"[{self.name}] {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def popen(self, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start a long-running process in this host; the lab stops it at teardown."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(self.cmd(argv), start_new_session=True, **kw)
        self.lab.processes.append(proc)
        return proc

    def address(self, ifname: str) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Interface(self.interfaces[ifname]).ip


@dataclass
class Segment:
    """An L2 switch: a bridge `br0` inside its own namespace."""

    lab: Lab
    name: str
    ns: str
    ports: int = 0

    def cmd(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def tap(self) -> str:
        """A tap device on this switch for a qemu NIC; run qemu with `segment.cmd([...])`."""
        self.ports += 1
        tap = f"tap{self.ports}"
        _ip("-n", self.ns, "tuntap", "add", "dev", tap, "mode", "tap")
        _ip("-n", self.ns, "link", "set", tap, "master", "br0", "up")
        return tap

    def capture(self, path: str, bpf: str = "udp") -> subprocess.Popen:
        """tcpdump on the bridge, writing a pcap (for golden packets)."""
        proc = subprocess.Popen(
            self.cmd(["tcpdump", "-i", "br0", "-U", "-w", path, bpf]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.lab.processes.append(proc)
        return proc


class Lab:
    """A set of namespaces torn down together. Use as a context manager."""

    _count = 0

    def __init__(self) -> None:
        ok, reason = available()
        if not ok:
            raise LabError(reason)
        sweep_stale()
        Lab._count += 1
        self.tag = f"{PREFIX}{os.getpid()}-{Lab._count}"
        self.hosts: dict[str, Host] = {}
        self.segments: dict[str, Segment] = {}
        self.processes: list[subprocess.Popen] = []
        self._namespaces: list[str] = []

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _new_ns(self, kind: str, name: str) -> str:
        if not _NAME.match(name):
            raise LabError(f"lab name {name!r}: 1-12 lowercase letters/digits, starting with a letter")
        ns = f"{self.tag}{kind}{name}"
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def segment(self, name: str) -> Segment:
        ns = self._new_ns("s-", name)
        _ip("-n", ns, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        _ip("-n", ns, "link", "set", "br0", "up")
        seg = self.segments[name] = Segment(self, name, ns)
        return seg

    def host(self, name: str) -> Host:
        ns = self._new_ns("h-", name)
        host = self.hosts[name] = Host(self, name, ns)
        return host

    def plug(
        self, host: Host, segment: Segment, ifname: str, address: str | None = None, mac: str | None = None
    ) -> str:
        """Connect `host` to `segment` by a veth pair; `ifname` inside the host, optional address."""
        segment.ports += 1
        port = f"p{segment.ports}"
        # Created inside the switch namespace, its peer placed straight into the host namespace.
        _ip("-n", segment.ns, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", host.ns)
        _ip("-n", segment.ns, "link", "set", port, "master", "br0", "up")
        if mac:
            _ip("-n", host.ns, "link", "set", ifname, "address", mac)
        if address:
            _ip("-n", host.ns, "addr", "add", address, "dev", ifname)
            host.interfaces[ifname] = address
        else:
            host.interfaces[ifname] = ""
        _ip("-n", host.ns, "link", "set", ifname, "up")
        return ifname

    def route(self, host: Host, destination: str, via: str) -> None:
        _ip("-n", host.ns, "route", "add", destination, "via", via)

    def forward(self, host: Host) -> None:
        """Let `host` route between its interfaces (a router or relay host)."""
        host.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])

    def close(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 3
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        for ns in reversed(self._namespaces):
            _kill_namespace(ns)
        self._namespaces.clear()
        self.processes.clear()
