#!/usr/bin/env python3
"""TFTP throughput, bootsrv against tftpd-hpa and atftpd (and stock tftpy), side by side in one run.

Every server serves the same root on 127.0.0.1 (a high port each) and is fetched by the same real
clients (Debian's atftp and curl):
  1. one 64 MiB file, blksize 1468, lockstep (atftp)            target: >= 1.0x tftpd-hpa
  2. one 64 MiB file, blksize 1468, windowsize 16 (atftp)       target: >= 1.0x atftpd
  3. 50 concurrent clients fetching 20 MiB each (curl, blksize 1468)  target: time <= tftpd-hpa
Rounds interleave the servers (best and median printed; ratios use medians); every
received file is compared with the original.

    .venv/bin/python bench/bench_tftp.py [--repeat 5] [--concurrent-repeat 2] [--clients 50] [--stock]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bootsrv.lab.netns import descendants

REPO = Path(__file__).resolve().parent.parent
ATFTPD = REPO / ".cache/atftpd/usr/sbin/atftpd"
IN_TFTPD = Path("/usr/sbin/in.tftpd")
MiB = 1 << 20

BOOTSRV = """
import sys, threading
from bootsrv import log
log.setup("warning")
from bootsrv.tftp.server import TftpServer
workers, _, processes = sys.argv[3].partition("x")
s = TftpServer(sys.argv[1], "127.0.0.1", int(sys.argv[2]), workers=int(workers), processes=int(processes or 0))
s.start()
threading.Event().wait()
"""

STOCK_TFTPY = """
import logging, sys, tftpy
logging.getLogger("tftpy").setLevel(logging.WARNING)
tftpy.TftpServer(sys.argv[1]).listen("127.0.0.1", int(sys.argv[2]))
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_commands(root: Path, stock: bool, variants: list[str]) -> dict[str, list[str] | None]:
    py = sys.executable
    cmds: dict[str, list[str] | None] = {}
    for v in variants:
        cmds["bootsrv" if v == variants[0] else f"bootsrv/{v}"] = [py, "-c", BOOTSRV, str(root), "{port}", v]
    cmds.update(
        {
            "tftpd-hpa": [str(IN_TFTPD), "-L", "-a", "127.0.0.1:{port}", "-s", str(root)]
            if IN_TFTPD.exists()
            else None,
            # --no-fork --daemon: standalone in the foreground; --user root so the unpacked binary
            # needs no 'nobody' setup; --logfile /dev/null: no per-transfer syslog cost.
            "atftpd": [
                str(ATFTPD),
                "--daemon",
                "--no-fork",
                "--port",
                "{port}",
                "--bind-address",
                "127.0.0.1",
                "--user",
                "root",
                "--group",
                "root",
                "--logfile",
                "/dev/null",
                "--maxthread",
                "200",
                str(root),
            ]
            if ATFTPD.exists()
            else None,
        }
    )
    if stock:
        cmds["stock tftpy"] = [py, "-c", STOCK_TFTPY, str(root), "{port}"]
    return cmds


class Server:
    def __init__(self, name: str, cmd: list[str]):
        self.name, self.port = name, free_port()
        self.proc = subprocess.Popen(
            [c.replace("{port}", str(self.port)) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            r = subprocess.run(["curl", "-s", "-m", "1", "-o", "/dev/null", f"tftp://127.0.0.1:{self.port}/probe"])
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer on port {self.port}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pin(pid: int, cpus: set[int]) -> None:
    # Every thread of the server and of its children: forks made later inherit it.
    for p in descendants(pid):  # bootsrv's pump processes, tftpd-hpa's forks
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except OSError:
                pass


PIN: set[int] | None = None  # --pin: server and client on one CPU for the single transfers


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def atftp_fetch(port: int, name: str, out: Path, window: int | None) -> float:
    cmd = ["atftp", "--option", "blksize 1468"]
    if window:
        cmd += ["--option", f"windowsize {window}"]
    cmd += ["-g", "-r", name, "-l", str(out), "127.0.0.1", str(port)]
    t0 = time.perf_counter()
    subprocess.run(
        cmd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=300,
        preexec_fn=(lambda: os.sched_setaffinity(0, PIN)) if PIN else None,
    )
    return time.perf_counter() - t0


def single(port: int, root: Path, work: Path, window: int | None, repeat: int, want: str) -> list[float]:
    rates = []
    for _ in range(repeat):
        out = work / "single.out"
        seconds = atftp_fetch(port, "f64", out, window)
        if sha(out) != want:
            raise RuntimeError("64 MiB transfer arrived corrupted")
        rates.append(64 / seconds)
        out.unlink()
    return rates


def concurrent(port: int, work: Path, clients: int, want: str) -> float:
    outs = [work / f"c{i}.out" for i in range(clients)]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(["curl", "-s", "--tftp-blksize", "1468", "-o", str(o), f"tftp://127.0.0.1:{port}/f20"])
        for o in outs
    ]
    codes = [p.wait(timeout=600) for p in procs]
    seconds = time.perf_counter() - t0
    if any(codes):
        raise RuntimeError(f"curl exit codes {sorted(set(codes))}")
    bad = [o.name for o in outs if sha(o) != want]
    for o in outs:
        o.unlink()
    if bad:
        raise RuntimeError(f"{len(bad)} of {clients} transfers corrupted")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="rounds of the single transfers")
    ap.add_argument("--concurrent-repeat", type=int, default=2, help="rounds of the concurrent test")
    ap.add_argument(
        "--bootsrv",
        type=lambda v: v.split(","),
        default=["2x4"],
        metavar="WxP,...",
        help="bootsrv worker threads x pump processes (default 2x4, as `bootsrv serve`); a list runs one bootsrv"
        " per value, the first is the one compared",
    )
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--stock", action="store_true", help="also measure stock tftpy (single transfers only)")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="single transfers with server and client on CPU 0: per-packet cost without the luck of "
        "where the scheduler puts them (loopback lockstep otherwise swings 30-70 MiB/s)",
    )
    args = ap.parse_args()
    global PIN
    PIN = {0} if args.pin else None
    for tool in ("atftp", "curl"):
        if not shutil.which(tool):
            print(f"bench_tftp: {tool} missing (./setup installs it)", file=sys.stderr)
            return 2

    work = Path(tempfile.mkdtemp(prefix="bench-tftp-"))
    root = work / "root"
    root.mkdir()
    os.chmod(work, 0o755)
    for name, size in (("f64", 64 * MiB), ("f20", 20 * MiB)):
        (root / name).write_bytes(os.urandom(size))
        os.chmod(root / name, 0o644)
    (root / "probe").write_bytes(b"ready\n")
    os.chmod(root / "probe", 0o644)
    want64, want20 = sha(root / "f64"), sha(root / "f20")

    servers: dict[str, Server] = {}
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        for name, cmd in server_commands(root, args.stock, args.bootsrv).items():
            if cmd is None:
                print(f"{name}: not installed, skipped")
                continue
            servers[name] = Server(name, cmd)
            samples[name] = {"lockstep": [], "window16": [], "concurrent": []}
        # Rounds interleave the servers, so a burst of load from elsewhere on the host hits all
        # of them alike; medians over rounds.
        for rnd in range(args.repeat):
            for name, srv in servers.items():
                if PIN:
                    pin(srv.proc.pid, PIN)
                samples[name]["lockstep"] += single(srv.port, root, work, None, 1, want64)
                samples[name]["window16"] += single(srv.port, root, work, 16, 1, want64)
            print(
                f"round {rnd + 1}/{args.repeat}: "
                + "  ".join(f"{n} {samples[n]['lockstep'][-1]:.0f}/{samples[n]['window16'][-1]:.0f}" for n in servers),
                flush=True,
            )
        all_cpus = set(range(os.cpu_count() or 1))
        for rnd in range(args.concurrent_repeat):
            for name, srv in servers.items():
                pin(srv.proc.pid, all_cpus)
                if name != "stock tftpy":
                    samples[name]["concurrent"].append(concurrent(srv.port, work, args.clients, want20))
            print(
                f"concurrent round {rnd + 1}/{args.concurrent_repeat}: "
                + "  ".join(f"{n} {samples[n]['concurrent'][-1]:.1f}s" for n in servers if samples[n]["concurrent"]),
                flush=True,
            )
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)

    print()
    results: dict[str, dict[str, float]] = {}
    for name, smp in samples.items():
        r = {k: statistics.median(v) for k, v in smp.items() if v}
        results[name] = r
        line = (
            f"{name:12s} 64 MiB lockstep {r['lockstep']:6.1f} MiB/s (best {max(smp['lockstep']):.1f})"
            f"   windowsize 16 {r['window16']:6.1f} MiB/s (best {max(smp['window16']):.1f})"
        )
        if "concurrent" in r:
            line += (
                f"   {args.clients}x20 MiB {r['concurrent']:5.1f} s ({args.clients * 20 / r['concurrent']:.0f} MiB/s)"
            )
        print(line)
    print()
    ours = results["bootsrv"]
    print()
    for ref in ("tftpd-hpa", "atftpd", "stock tftpy"):
        if ref not in results:
            continue
        theirs = results[ref]
        parts = [
            f"lockstep {ours['lockstep'] / theirs['lockstep']:.2f}x",
            f"windowsize 16 {ours['window16'] / theirs['window16']:.2f}x",
        ]
        if "concurrent" in theirs:
            parts.append(f"{args.clients}x20 MiB {theirs['concurrent'] / ours['concurrent']:.2f}x (their time / ours)")
        print(f"bootsrv vs {ref:11s}: " + "   ".join(parts))
    checks = []
    if "atftpd" in results:
        checks.append(("windowsize 16 >= 1.0x atftpd", ours["window16"] >= results["atftpd"]["window16"]))
    if "tftpd-hpa" in results:
        checks.append(("lockstep >= 1.0x tftpd-hpa", ours["lockstep"] >= results["tftpd-hpa"]["lockstep"]))
        checks.append(
            (
                f"{args.clients}x20 MiB no slower than tftpd-hpa",
                ours["concurrent"] <= results["tftpd-hpa"]["concurrent"],
            )
        )
    print()
    for what, ok in checks:
        print(f"target {what}: {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
