#!/usr/bin/env python3
"""DHCP throughput: bootsrv against Kea, ISC dhcpd and dnsmasq: same run, namespaces and load tool.

    sudo python bench/bench_dhcp.py                 # all four servers
    sudo python bench/bench_dhcp.py --servers bootsrv,kea --seconds 4
    sudo python bench/bench_dhcp.py --servers bootsrv,baseline,kea --baseline /tmp/old   # before/after

`--baseline DIR` adds the server `baseline`: bootsrv from another tree (a `git worktree` of an
older commit, say), started with PYTHONPATH=DIR and configured as `bootsrv` is, so a change is
measured against the code before it in the same run, under the same load.

Topology (bootsrv.lab.netns, nothing outside our namespaces): one segment, a `server` host (10.60.0.1/16)
and a `client` host (10.60.0.2/16) running perfdhcp (Debian kea-admin) with `-g single`. perfdhcp
plays a relay agent: every packet carries giaddr 10.60.0.2 and replies go unicast to its port 67,
so each server is configured for that relay.

For each server, on a fresh lease directory each step, the script:
  1. finds the highest offered rate whose DORA loss is <= 1 % (doubling, then bisecting) and
     reports the completed DORA/s there (ACKs received / test period); a step above the limit is
     measured once more before it counts as failed, for every server alike (on a shared machine
     one noisy step otherwise ended a server's search at half its rate);
  2. offers three times that rate ("overload"; at most 30,000/s: perfdhcp itself tops out near
     20,000/s here) and reports what still completes;
then prints bootsrv's ratio to each reference server.

Durability differs and is printed: bootsrv fsyncs every ACKed lease before sending it (group
commit); Kea's memfile appends without fsync; dhcpd appends and fsyncs each commit; dnsmasq
rewrites its lease file on every change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootsrv.lab.netns import Host, Lab, cpu_seconds, descendants  # noqa: E402

SERVER_IP, CLIENT_IP, PREFIX = "10.60.0.1", "10.60.0.2", 16
POOL = ("10.60.1.0", "10.60.250.255")  # ~63,000 addresses: never the bottleneck
LOSS_LIMIT = 0.01


# ---------------------------------------------------------------------------------------------
# Servers under test: each writes its config into a fresh directory and starts in the server host.


class Target:
    name = ""
    durability = ""

    def available(self) -> str | None:
        """None when runnable here, else why not."""
        return None

    def start(self, host: Host, workdir: Path) -> subprocess.Popen:
        raise NotImplementedError

    def ready(self, proc: subprocess.Popen, workdir: Path) -> None:
        time.sleep(1.0)
        if proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited {proc.returncode}: {_tail(workdir / 'stderr')}")


class Kea(Target):
    name = "kea"
    durability = "memfile append, no fsync"

    def available(self):
        return None if shutil.which("kea-dhcp4") else "kea-dhcp4 not installed (Debian kea-dhcp4-server)"

    def start(self, host, workdir):
        conf = {
            "Dhcp4": {
                "interfaces-config": {"interfaces": ["net0"], "dhcp-socket-type": "udp"},
                "lease-database": {
                    "type": "memfile",
                    "persist": True,
                    "name": str(workdir / "leases4.csv"),
                    "lfc-interval": 0,
                },
                "valid-lifetime": 3600,
                "renew-timer": 900,
                "rebind-timer": 1800,
                "subnet4": [{"id": 1, "subnet": f"10.60.0.0/{PREFIX}", "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}]}],
                "loggers": [{"name": "kea-dhcp4", "severity": "WARN", "output_options": [{"output": "stderr"}]}],
            }
        }
        (workdir / "kea.json").write_text(json.dumps(conf))
        env = dict(os.environ, KEA_LOCKFILE_DIR=str(workdir), KEA_PIDFILE_DIR=str(workdir))
        return host.popen(["kea-dhcp4", "-c", str(workdir / "kea.json")], env=env, stderr=open(workdir / "stderr", "w"))


class Dnsmasq(Target):
    name = "dnsmasq"
    durability = "lease file rewritten per change"

    def available(self):
        return None if shutil.which("dnsmasq") else "dnsmasq not installed (Debian dnsmasq-base)"

    def start(self, host, workdir):
        argv = [
            "dnsmasq",
            "--no-daemon",
            "--no-ping",
            "--conf-file=/dev/null",
            "--port=0",
            f"--dhcp-range={POOL[0]},{POOL[1]},255.255.0.0,1h",
            f"--dhcp-leasefile={workdir}/leases",
            "--interface=net0",
            "--bind-interfaces",
            "--dhcp-lease-max=200000",
            "--dhcp-authoritative",
            "--quiet-dhcp",
            f"--pid-file={workdir}/pid",
        ]
        return host.popen(argv, stderr=open(workdir / "stderr", "w"))


class IscDhcpd(Target):
    """ISC dhcpd 4.4 (end of life since 2022, still the server many sites run): the issue's
    floor, "never below dhcpd". No ping check, as dnsmasq runs with --no-ping."""

    name = "dhcpd"
    durability = "lease file append, fsync per commit"

    def available(self):
        return None if shutil.which("dhcpd") else "dhcpd not installed (Debian isc-dhcp-server)"

    def start(self, host, workdir):
        (workdir / "dhcpd.conf").write_text(f"""
ddns-update-style none;
authoritative;
ping-check false;
default-lease-time 3600;
max-lease-time 3600;
subnet 10.60.0.0 netmask 255.255.0.0 {{ range {POOL[0]} {POOL[1]}; }}
""")
        (workdir / "dhcpd.leases").touch()
        # -f: foreground, logging to syslog (none runs in the lab: one failed send per line, as
        # a site without syslog would pay); -d would write every DISCOVER to stderr.
        argv = [
            "dhcpd",
            "-f",
            "-4",
            "-q",
            "-cf",
            str(workdir / "dhcpd.conf"),
            "-lf",
            str(workdir / "dhcpd.leases"),
            "-pf",
            str(workdir / "pid"),
            "net0",
        ]
        return host.popen(argv, stderr=open(workdir / "stderr", "w"))


class Bootsrv(Target):
    name = "bootsrv"
    durability = "fsync before every ACK (group commit)"
    processes = 1  # dhcp.processes (--processes)
    tree: str | None = None  # another checkout to run instead of this one (--baseline)

    def available(self):
        import importlib.util

        if importlib.util.find_spec("bootsrv.dhcp.engine") is None:
            return "the DHCP engine (bootsrv/dhcp/engine.py) is not in this tree yet"
        return None

    def start(self, host, workdir):
        (workdir / "store").mkdir()
        conf = f"""
[server]
name = "bench"
owner_ips = ["{SERVER_IP}"]
[store]
directory = "{workdir / "store"}"
[[networks]]
name = "bench"
subnet = "10.60.0.0/{PREFIX}"
interface = "net0"
relays = ["{CLIENT_IP}"]
lease_time = 3600
[[networks.ranges]]
start = "{POOL[0]}"
end = "{POOL[1]}"
[dhcp]
processes = {self.processes}
[dns]
enabled = false
[tftp]
enabled = false
[http]
enabled = false
"""
        (workdir / "bootsrv.toml").write_text(conf)
        argv = [
            sys.executable,
            "-m",
            "bootsrv",
            "--config",
            str(workdir / "bootsrv.toml"),
            "--log-level",
            "warning",
            "serve",
        ]
        env = None if self.tree is None else {**os.environ, "PYTHONPATH": self.tree}
        return host.popen(argv, stderr=open(workdir / "stderr", "w"), cwd=str(workdir), env=env)

    def ready(self, proc, workdir):
        # `serve` logs at warning level here; give the interpreter time to import and bind.
        time.sleep(2.0)
        if proc.poll() is not None:
            raise RuntimeError(f"bootsrv exited {proc.returncode}: {_tail(workdir / 'stderr')}")


class BootsrvLoop(Target):
    """bootsrv's socket loop (bootsrv.dhcp.server) with a stand-in handler that answers from the
    packet alone: no engine, no store. The ceiling the loop itself puts on DORA/s."""

    name = "loop-only"
    durability = "none (socket loop ceiling, not a server)"

    def start(self, host, workdir):
        argv = [sys.executable, __file__, "--serve-loop-only", "net0"]
        return host.popen(argv, stderr=open(workdir / "stderr", "w"))


def _loop_only_handler(raw: bytes, arrival):
    """OFFER for DISCOVER, ACK for REQUEST, built by slicing the request (RFC 2131 table 3)."""
    from ipaddress import IPv4Address

    from bootsrv.dhcp.server import Outgoing

    if len(raw) < 244 or raw[0] != 1 or raw[236:240] != b"\x63\x82\x53\x63":
        raise ValueError("not a BOOTREQUEST with the DHCP magic cookie")
    i, kind = 240, 0
    while i < len(raw) and raw[i] != 255:
        if raw[i] == 0:
            i += 1
            continue
        if raw[i] == 53:
            kind = raw[i + 2]
        i += 2 + raw[i + 1]
    reply_type = {1: 2, 3: 5}.get(kind)
    if reply_type is None:
        return None
    mac = raw[28:34]
    yiaddr = bytes([10, 60, 1 + mac[4] % 250, mac[5]])
    opts = bytes([53, 1, reply_type, 54, 4, 10, 60, 0, 1, 51, 4, 0, 0, 14, 16, 1, 4, 255, 255, 0, 0, 255])
    out = b"\x02" + raw[1:12] + b"\0\0\0\0" + yiaddr + bytes([10, 60, 0, 1]) + raw[24:236] + raw[236:240] + opts
    giaddr = raw[24:28]
    if giaddr != b"\0\0\0\0":
        return Outgoing(out, IPv4Address(giaddr), 67)
    return Outgoing(out, IPv4Address("255.255.255.255"), 68)


class BootsrvLoopDurable(BootsrvLoop):
    """The loop-only stand-in plus one fsync'ed append per ACK through a leader/follower group
    commit: what durability costs the loop, before any engine or store logic."""

    name = "loop-durable"
    durability = "fsync before every ACK (stand-in group commit)"

    def start(self, host, workdir):
        argv = [sys.executable, __file__, "--serve-loop-only", "net0", "--durable-log", str(workdir / "acks.log")]
        return host.popen(argv, stderr=open(workdir / "stderr", "w"))


class _GroupCommit:
    """Leader/follower group commit: the first waiter writes and fsyncs everything pending."""

    def __init__(self, path: str):
        import threading

        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.cond = threading.Condition()
        self.pending: list[bytes] = []
        self.queued = self.synced = 0
        self.syncing = False
        self.fsyncs = 0

    def commit(self, line: bytes) -> None:
        with self.cond:
            self.pending.append(line)
            self.queued += 1
            mine = self.queued
            while self.synced < mine:
                if self.syncing:
                    self.cond.wait()
                    continue
                self.syncing, batch, upto, self.pending = True, self.pending, self.queued, []
                self.cond.release()
                try:
                    os.write(self.fd, b"".join(batch))
                    os.fsync(self.fd)
                finally:
                    self.cond.acquire()
                self.fsyncs += 1
                self.synced, self.syncing = upto, False
                self.cond.notify_all()


def serve_loop_only(interface: str, durable_log: str | None = None) -> int:
    import threading

    from bootsrv.dhcp.server import DhcpServer

    def handler(raw, arrival):
        out = _loop_only_handler(raw, arrival)
        if durable_log and out is not None and out.payload[242] == 5:  # an ACK: durable first
            line = out.payload[28:34].hex().encode() + b" " + out.payload[16:20].hex().encode() + b"\n"
            group.commit(line)
        return out

    group = _GroupCommit(durable_log) if durable_log else None

    # One worker, as `bootsrv serve` runs (bootsrv/dhcp/server.py, "Threads"): with 8 the
    # workers' GIL hand-offs (10 futex calls per packet under strace) made the bare loop cost
    # 74-85 us of CPU per DORA instead of 55-62. The stand-in group commit blocks its handler,
    # so it needs several workers to gather a batch.
    default_workers = "8" if durable_log else "1"
    server = DhcpServer(
        [interface],
        relay_socket=False,
        port=67,
        handler=handler,
        workers=int(os.environ.get("BENCH_WORKERS", default_workers)),
    )
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


class Baseline(Bootsrv):
    """bootsrv from the tree given with --baseline: the code before a change, in the same run."""

    name = "baseline"

    def available(self):
        if self.tree is None:
            return "no --baseline DIR given"
        if not (Path(self.tree) / "bootsrv" / "dhcp" / "engine.py").is_file():
            return f"{self.tree} is not a bootsrv tree with a DHCP engine"
        return None


TARGETS = {
    t.name: t for t in (Bootsrv(), Baseline(), Kea(), IscDhcpd(), Dnsmasq(), BootsrvLoop(), BootsrvLoopDurable())
}


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _tail(path: Path, n: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# Load


@dataclass
class Step:
    offered: int  # exchanges/s perfdhcp was asked to start
    period: float
    discovers: int
    offers: int
    requests: int
    acks: int
    cpu: float = 0.0  # seconds of CPU the server (all its processes) used during the step

    @property
    def cpu_per_dora(self) -> float:
        """Microseconds of server CPU per completed exchange."""
        return self.cpu / self.acks * 1e6 if self.acks else 0.0

    def line(self, server: str) -> str:
        return (
            f"  {server:8} offered {self.offered:6}/s  DORA {self.dora_per_s:8.1f}/s  loss {self.loss:6.2%}  "
            f"server CPU {self.cpu_per_dora:4.0f} us/DORA"
        )

    @property
    def loss(self) -> float:
        return 1.0 - self.acks / self.discovers if self.discovers else 1.0

    @property
    def dora_per_s(self) -> float:
        return self.acks / self.period


_STATS = re.compile(r"\*\*\*Statistics for: (\S+)\*\*\*\s*sent packets: (\d+)\s*received packets: (\d+)")


def perfdhcp(client: Host, rate: int, seconds: int, clients: int) -> Step:
    argv = [
        "perfdhcp",
        "-4",
        "-g",
        "single",
        "-l",
        "net0",
        "-r",
        str(rate),
        "-p",
        str(seconds),
        "-R",
        str(clients),
        SERVER_IP,
    ]
    proc = client.run(argv, check=False, timeout=seconds + 30)
    # perfdhcp exits 3 when anything was dropped; that is a measurement, not a failure.
    stats = {kind: (int(sent), int(recv)) for kind, sent, recv in _STATS.findall(proc.stdout)}
    if "DISCOVER-OFFER" not in stats:
        raise RuntimeError(f"perfdhcp gave no statistics (exit {proc.returncode}): {proc.stderr[-400:]}")
    d, o = stats["DISCOVER-OFFER"]
    r, a = stats.get("REQUEST-ACK", (0, 0))
    return Step(rate, seconds, d, o, r, a)


def answering(client: Host, proc: subprocess.Popen, target: Target, workdir: Path, timeout: float = 15) -> None:
    """Wait until the server answers: a server still starting up (Python imports, socket setup)
    would otherwise count as loss in the first fraction of a second. Four MACs whose last bytes
    differ, so that each of bootsrv's dhcp.processes (steered by that byte) has answered too."""
    deadline = time.monotonic() + timeout
    waiting = [f"02:ff:00:00:00:{i:02x}" for i in range(1, 5)]
    while time.monotonic() < deadline and waiting:
        # One DISCOVER, up to 0.5 s for the OFFER (-W); perfdhcp -n 1 stops before the REQUEST.
        probe = client.run(
            [
                "perfdhcp",
                "-4",
                "-l",
                "net0",
                "-n",
                "1",
                "-W",
                "500000",
                "-R",
                "1",
                "-b",
                f"mac={waiting[0]}",
                SERVER_IP,
            ],
            check=False,
            timeout=10,
        )
        stats = {kind: int(recv) for kind, _sent, recv in _STATS.findall(probe.stdout)}
        if stats.get("DISCOVER-OFFER", 0) >= 1:
            waiting.pop(0)
        elif proc.poll() is not None:
            break
    if waiting:
        raise RuntimeError(f"{target.name} never answered a probe: {_tail(workdir / 'stderr')}")


def measure(lab: Lab, server: Host, client: Host, target: Target, rate: int, seconds: float, clients: int) -> Step:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{target.name}-"))
    proc = target.start(server, workdir)
    try:
        target.ready(proc, workdir)
        answering(client, proc, target, workdir)
        pids = descendants(proc.pid)
        before = cpu_seconds(pids)
        step = perfdhcp(client, rate, seconds, clients)
        step.cpu = cpu_seconds(pids) - before
        if proc.poll() is not None:
            raise RuntimeError(f"{target.name} died during the run: {_tail(workdir / 'stderr')}")
        return step
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def sustained(lab, server, client, target, seconds, clients, start_rate, max_rate, log) -> Step:
    """The highest offered rate with loss <= 1 % (doubling, then 3 bisection steps)."""

    def trial(rate: int) -> Step:
        step = measure(lab, server, client, target, rate, seconds, clients)
        log(step.line(target.name))
        if step.loss > LOSS_LIMIT:  # once more before the search turns on it (see the module doc)
            again = measure(lab, server, client, target, rate, seconds, clients)
            log(again.line(target.name) + "  (again)")
            step = min(step, again, key=lambda st: st.loss)
        return step

    good: Step | None = None
    bad_rate = None
    rate = start_rate
    while rate <= max_rate:
        step = trial(rate)
        if step.loss <= LOSS_LIMIT:
            good = step
            rate = max_rate if rate < max_rate < 2 * rate else 2 * rate
        else:
            bad_rate = rate
            break
    if good is None:
        good = Step(0, seconds, 0, 0, 0, 0)
    if bad_rate is not None:
        low, high = good.offered, bad_rate
        for _ in range(3):
            mid = (low + high) // 2
            if mid <= low:
                break
            step = trial(mid)
            if step.loss <= LOSS_LIMIT:
                good, low = step, mid
            else:
                high = mid
    return good


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="bootsrv,kea,dhcpd,dnsmasq")
    ap.add_argument("--seconds", type=int, default=4, help="perfdhcp test period per step")
    ap.add_argument("--clients", type=int, default=50000, help="perfdhcp -R: distinct client MACs")
    ap.add_argument("--start-rate", type=int, default=125)
    ap.add_argument("--rounds", type=int, default=1, help="repeat, alternating the order; report medians")
    ap.add_argument(
        "--max-rate",
        type=int,
        default=24000,
        help="highest offered rate tried (perfdhcp -g single sends about 20,000/s here)",
    )
    ap.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="bootsrv's dhcp.processes (default: one per CPU, as a busy server would be set up)",
    )
    ap.add_argument("--baseline", metavar="DIR", help="another bootsrv tree, run as the server `baseline`")
    ap.add_argument("--serve-loop-only", metavar="IFACE", help=argparse.SUPPRESS)
    ap.add_argument("--durable-log", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_loop_only:
        return serve_loop_only(args.serve_loop_only, args.durable_log)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    for name in names:
        if name not in TARGETS:
            ap.error(f"--servers: unknown server {name!r}; expected some of {', '.join(TARGETS)}")
    for name in ("bootsrv", "baseline"):
        TARGETS[name].processes = args.processes
        TARGETS[name].durability += f", {args.processes} process{'es' if args.processes > 1 else ''}"
    TARGETS["baseline"].tree = args.baseline
    if shutil.which("perfdhcp") is None:
        print("perfdhcp not installed (Debian package kea-admin)", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(msg, flush=True)

    results: dict[str, tuple[Step, Step]] = {}
    with Lab() as lab:
        seg = lab.segment("bench")
        server, client = lab.host("server"), lab.host("client")
        lab.plug(server, seg, "net0", f"{SERVER_IP}/{PREFIX}")
        lab.plug(client, seg, "net0", f"{CLIENT_IP}/{PREFIX}")
        log(f"cpus={os.cpu_count()} period={args.seconds}s clients={args.clients} loss limit={LOSS_LIMIT:.0%}")
        runs: dict[str, list[tuple[Step, Step]]] = {}
        for round_no in range(args.rounds):
            # Alternate the order each round: on a shared machine the load changes over minutes,
            # and the median of rounds taken in turn compares the servers under similar load.
            order = names if round_no % 2 == 0 else list(reversed(names))
            for name in order:
                target = TARGETS[name]
                why = target.available()
                if why:
                    if round_no == 0:
                        log(f"{name}: skipped: {why}")
                    continue
                log(f"{name} ({target.durability}) round {round_no + 1}/{args.rounds}  load {_load()}")
                try:
                    best = sustained(
                        lab, server, client, target, args.seconds, args.clients, args.start_rate, args.max_rate, log
                    )
                    over_rate = min(max(3 * best.offered, 2 * args.start_rate), 30000)
                    over = measure(lab, server, client, target, over_rate, args.seconds, args.clients)
                except RuntimeError as exc:  # did not start or died (e.g. an AppArmor profile): the others go on
                    log(f"{name}: failed, left out of this round: {exc}")
                    continue
                log(f"  {name:8} overload offered {over_rate}/s  DORA {over.dora_per_s:.1f}/s  loss {over.loss:.2%}")
                runs.setdefault(name, []).append((best, over))
        for name, got in runs.items():
            best = sorted((b for b, _ in got), key=lambda st: st.dora_per_s)[len(got) // 2]
            over = sorted((o for _, o in got), key=lambda st: st.dora_per_s)[len(got) // 2]
            results[name] = (best, over)
            if len(got) > 1:
                log(
                    f"{name}: rounds at <=1% loss {[round(b.dora_per_s) for b, _ in got]}, "
                    f"overload {[round(o.dora_per_s) for _, o in got]}; medians below"
                )

    log("")
    log(f"{'server':14} {'DORA/s <=1% loss':>18} {'overload DORA/s':>16} {'(offered)':>10}  durability")
    for name, (best, over) in results.items():
        log(f"{name:14} {best.dora_per_s:18.1f} {over.dora_per_s:16.1f} {over.offered:10}  {TARGETS[name].durability}")
    if "bootsrv" in results:
        mine, mine_over = results["bootsrv"]
        for name, (best, over) in results.items():
            if name == "bootsrv":
                continue
            r1 = mine.dora_per_s / best.dora_per_s if best.dora_per_s else float("inf")
            r2 = mine_over.dora_per_s / over.dora_per_s if over.dora_per_s else float("inf")
            log(f"bootsrv / {name}: {r1:.2f}x at <=1% loss, {r2:.2f}x under overload")
    return 0


if __name__ == "__main__":
    sys.exit(main())
