"""Machine registry at pool scale: hundreds of hypervisors in one file registry.

    python bench/machines_registry.py [--machines 500] [--ops 200]

Prints per-operation latency for: a cached get (the DHCP path), a get after the peer wrote
(re-parse), a compare-and-swap put (lock + rewrite + fsync + rename + dir fsync), pool() over
every machine, and a full enrollment (token scan + write). No reference server keeps this data,
so there are no ratios; the numbers say whether "hundreds of hypervisors" stays interactive.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

from bootsrv.machines.admin import discover
from bootsrv.machines.enrollment import enroll, start_install
from bootsrv.machines.model import Machine, State, update
from bootsrv.machines.pool import pool
from bootsrv.machines.store import FileRegistry


def mac(i: int) -> str:
    return f"52:54:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


def facts(m: str, i: int) -> dict:
    return {
        "hostname": f"hv{i}",
        "cpus": 32,
        "memory_mib": 262144,
        "nics": [{"name": "fe0", "mac": m}, {"name": "be0", "mac": mac(i + 0x100000)}],
        "disks": [{"name": "sda", "size_bytes": 10**12}, {"name": "sdb", "size_bytes": 10**12}],
        "hypervisor": "kvm",
        "libvirt_uri": f"qemu+ssh://hv{i}/system",
    }


def timed(fn, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples) * 1e3, samples[int(len(samples) * 0.99) - 1] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=500)
    parser.add_argument("--ops", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        reg, peer = FileRegistry(directory), FileRegistry(directory)
        t0 = time.perf_counter()
        for i in range(args.machines):
            m = mac(i)
            reg.put(
                Machine(
                    mac=m,
                    hostname=f"hv{i}",
                    state=State.NEW,
                    profile="debian12-kvm-hypervisor",
                    segment="odd" if i % 2 else "even",
                ),
                None,
            )
            token = f"bench-token-{i:08d}-xxxxxxxxxxxxxxxx"
            start_install(reg, m, 0.0, 3600, new_token=lambda token=token: token)
            enroll(reg, {"token": token, "mac": m, "facts": facts(m, i)}, 1.0)
        build = time.perf_counter() - t0
        size = (reg.path.stat().st_size) / 1024
        print(f"built {args.machines} enrolled hypervisors in {build:.1f} s ({size:.0f} KiB file)")
        target = mac(args.machines // 2)
        rows = [
            ("get, cached (DHCP path)", timed(lambda: reg.get(target), args.ops)),
            ("discover, known machine", timed(lambda: discover(reg, target, 7, None, None, 2.0), args.ops)),
        ]

        def peer_write_then_get():
            update(peer, target, lambda m: dataclasses.replace(m, comment=str(time.time())))
            t = time.perf_counter()
            reg.get(target)
            return time.perf_counter() - t

        reparse = sorted(peer_write_then_get() for _ in range(min(args.ops, 50)))
        rows.append(("get after the peer wrote (re-parse)", (statistics.median(reparse) * 1e3, reparse[-1] * 1e3)))
        rows.append(
            (
                "put, compare-and-swap + fsync",
                timed(lambda: update(reg, target, lambda m: dataclasses.replace(m, comment="x")), min(args.ops, 50)),
            )
        )
        rows.append(("pool() over every machine", timed(lambda: pool(reg), args.ops)))
        for name, (p50, p99) in rows:
            print(f"{name:40} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms")


if __name__ == "__main__":
    main()
