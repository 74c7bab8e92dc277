"""bootsrv.lab.netns's process helpers for benchmarks: a server's process tree and the CPU it used."""

from __future__ import annotations

import subprocess
import sys
import time

from bootsrv.lab.netns import cpu_seconds, descendants


def test_descendants_finds_grandchildren_and_cpu_seconds_counts_them():
    # sh -> (sleep, python burning ~0.3 s of CPU); the grandchildren are what a benchmark measures.
    busy = "import time; t = time.process_time() + 0.3\nwhile time.process_time() < t: pass\ntime.sleep(5)"
    burn = f"{sys.executable} -c '{busy}'"
    proc = subprocess.Popen(["sh", "-c", f"sleep 5 & {burn} & wait"])
    try:
        deadline = time.monotonic() + 5
        while len(descendants(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = descendants(proc.pid)
        assert tree[0] == proc.pid and len(tree) == 3
        time.sleep(0.6)
        assert cpu_seconds(tree) >= 0.25
        assert cpu_seconds([proc.pid]) < 0.1  # the shell itself only waits
        assert cpu_seconds([2**22 + 7]) == 0.0  # no such process: nothing, no error
    finally:
        for pid in reversed(descendants(proc.pid)):
            subprocess.run(["kill", str(pid)], check=False)
        proc.wait(timeout=10)
