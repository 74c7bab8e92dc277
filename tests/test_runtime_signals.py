"""`bootsrv serve` and the DHCP children stop on SIGTERM however many arrive at once.

A DHCP child gets one SIGTERM from PR_SET_PDEATHSIG per thread of its parent that exits, so
signals come in bursts. A handler that called Event.set could run inside its own Event.set and
hang on the lock (it did: 1 child in 10 outlived a SIGKILLed serve). Here 30 processes each get
a burst of 300 SIGTERMs and must all stop; with the old handler about one in twenty hung."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from bootsrv.app.runtime import on_signals, wait_until_stopped

CHILD = """
import os, sys, threading
from bootsrv.app.runtime import on_signals, wait_until_stopped
signalled = on_signals()
os.write(1, b"ready\\n")
wait_until_stopped(threading.Event(), signalled)
os.write(1, b"stopped\\n")
"""


def test_a_burst_of_sigterms_stops_the_process_every_time():
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE) for _ in range(30)]
    hung = []
    try:
        for proc in procs:
            assert proc.stdout.readline() == b"ready\n"
            for _ in range(300):
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    break
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                hung.append(proc.pid)
            else:
                assert proc.stdout.read() == b"stopped\n"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
    assert not hung, f"{len(hung)} of 30 processes hung on a burst of SIGTERMs"


def test_wait_until_stopped_returns_on_the_event_too():
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    wait_until_stopped(stop, [])  # returns: the event, not a signal
    assert stop.is_set()


def test_on_signals_notes_a_signal_without_acting_on_it():
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        signalled = on_signals()
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: only noted
        wait_until_stopped(threading.Event(), signalled)
        assert signalled == [signal.SIGINT]
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def test_the_handler_takes_no_lock(monkeypatch):
    """What makes the burst safe, checked directly: the handler neither sets an Event nor logs
    (both take locks its own main thread may hold when the signal arrives)."""
    import logging

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a signal handler took a lock")

    old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        signalled = on_signals()
        handler = signal.getsignal(signal.SIGTERM)
        monkeypatch.setattr(threading.Event, "set", forbidden)
        monkeypatch.setattr(logging.Logger, "handle", forbidden)
        handler(signal.SIGTERM, None)
        handler(signal.SIGTERM, None)
        assert signalled == [signal.SIGTERM, signal.SIGTERM]
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
