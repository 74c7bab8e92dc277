"""dhcp.processes: the DHCP processes of one server beyond the first.

One Python process answers a few thousand DHCP exchanges a second (the GIL: decoding, deciding
and encoding are Python code). A server configured for n processes runs DHCP in `bootsrv serve`
(process 0) and in n - 1 children started from here, all on the same sockets (SO_REUSEPORT, the
client's MAC picks the process: server.py "Several processes") and the same lease store. What
keeps them apart is what keeps the pair apart: every write is a compare-and-swap under the store's
lock, and each process allocates from its own stripe of the ranges (LeaseStore.stripe), so the
offers they hold in memory do not name the same address (until a stripe is full: then a process
lends from the others' and a rare double offer ends in a NAK, see bootsrv.leases.allocation). DNS,
TFTP, HTTP and lease housekeeping stay in process 0.

A child is `python -m bootsrv.app.dhcp_child` (that module tells its side); it prints "ready" once
its sockets are bound. Process 0 starts each child from a supervising thread that lives as long
as the service and starts the child again when it dies.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time

from bootsrv.config import Config
from bootsrv.errors import BootsrvError
from bootsrv.log import JsonFormatter, event

log = logging.getLogger("bootsrv.dhcp")

READY = b"ready\n"
READY_TIMEOUT = 30.0  # seconds for a child to import, load the store and bind
RESTART_DELAY = (1.0, 30.0)  # first and longest wait before starting a dead child again


class WorkerFailed(BootsrvError):
    pass


def _log_settings() -> dict[str, str]:
    root = logging.getLogger("bootsrv")
    fmt = "json" if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers) else "kv"
    return {"level": logging.getLevelName(root.getEffectiveLevel()).lower(), "format": fmt}


class Processes:
    """Processes 1 .. n-1 of dhcp.processes, each started and restarted by a thread of its own."""

    def __init__(self, config: Config):
        self.config = config
        self._stop = threading.Event()
        self._children: dict[int, subprocess.Popen] = {}
        self._threads: list[threading.Thread] = []
        self._started: dict[int, threading.Event] = {}
        self._failed: dict[int, str] = {}
        self.restarts = 0

    def start(self) -> None:
        """Start the children one after the other, each once the one before serves, so that the
        kernel's socket group lists them in process order and the steering program's index for
        a MAC is that process (server.py "Several processes"). WorkerFailed if one cannot start."""
        for number in range(1, self.config.dhcp.processes):
            self._started[number] = threading.Event()
            thread = threading.Thread(
                target=self._supervise, args=(number,), daemon=True, name=f"dhcp-process-{number}"
            )
            thread.start()
            self._threads.append(thread)
            self._started[number].wait()
            if number in self._failed:
                self.stop()
                raise WorkerFailed(f"DHCP process {number} did not start: {self._failed[number]}")
        event(
            log,
            "dhcp.processes",
            count=self.config.dhcp.processes,
            pids=",".join(str(p.pid) for p in self._children.values()),
        )

    @property
    def pids(self) -> dict[int, int]:
        return {number: proc.pid for number, proc in self._children.items()}

    def stop(self) -> None:
        self._stop.set()
        for proc in list(self._children.values()):
            if proc.poll() is None:
                proc.terminate()
        for thread in self._threads:
            thread.join(timeout=10)
        for proc in list(self._children.values()):
            if proc.poll() is None:  # did not stop within the supervisor's wait
                proc.kill()
                proc.wait()

    def _supervise(self, number: int) -> None:
        delay = RESTART_DELAY[0]
        first = True
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                proc = self._spawn(number)
            except (OSError, WorkerFailed) as exc:
                if first:
                    self._failed[number] = str(exc)
                    self._started[number].set()
                    return
                event(log, "dhcp.process_restart_failed", logging.ERROR, process=number, error=str(exc))
            else:
                if first:
                    first = False
                    self._started[number].set()
                while proc.poll() is None and not self._stop.is_set():
                    try:
                        proc.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        pass
                if self._stop.is_set():
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    return
                event(log, "dhcp.process_died", logging.ERROR, process=number, pid=proc.pid, status=proc.returncode)
            # Its unicast clients are steered to the others meanwhile (server.py); start it again,
            # waiting longer each time it dies young so a child that cannot run does not spin.
            if time.monotonic() - began > 60:
                delay = RESTART_DELAY[0]
            if self._stop.wait(delay):
                return
            delay = min(2 * delay, RESTART_DELAY[1])
            self.restarts += 1

    def _spawn(self, number: int) -> subprocess.Popen:
        # Its own session: a ^C at the terminal reaches `serve`, which stops the children itself.
        proc = subprocess.Popen(
            [sys.executable, "-m", "bootsrv.app.dhcp_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._children[number] = proc
        try:
            setup = {
                "config": self.config.model_dump(mode="json"),
                "process": number,
                "parent": os.getpid(),
                "log": _log_settings(),
            }
            proc.stdin.write(json.dumps(setup).encode())
            proc.stdin.close()
            line = _read_line(proc, READY_TIMEOUT)
        except (OSError, WorkerFailed):
            proc.kill()
            proc.wait()
            proc.stdout.close()
            raise
        if line != READY:  # it closed its stdout: exiting, with the status its log explains
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            raise WorkerFailed(f"exited {proc.returncode} before it was ready (its log is above)")
        proc.stdout.close()  # nothing more comes through it (the child points its stdout at /dev/null)
        event(log, "dhcp.process_started", process=number, pid=proc.pid)
        return proc


def _read_line(proc: subprocess.Popen, timeout: float) -> bytes:
    fd = proc.stdout.fileno()
    readable, _, _ = select.select([fd], [], [], timeout)
    if not readable:
        raise WorkerFailed(f"not ready after {timeout:.0f} s")
    return proc.stdout.readline()
