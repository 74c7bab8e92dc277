"""One DHCP process beyond the first (bootsrv.app.dhcp_processes starts it): `python -m
bootsrv.app.dhcp_child`.

It reads the config (as JSON), its number and the log settings from stdin, builds the DHCP
service as `bootsrv serve` does, serves, and prints "ready" once its sockets are bound. It gets
SIGTERM when the thread that started it dies (PR_SET_PDEATHSIG), so a server killed with SIGKILL
leaves no DHCP process answering behind it.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import threading

from bootsrv import log as logsetup
from bootsrv.app.dhcp import dhcp_services
from bootsrv.app.dhcp_processes import READY
from bootsrv.app.runtime import on_signals, wait_until_stopped
from bootsrv.app.wiring import Wiring
from bootsrv.config import validate
from bootsrv.errors import BootsrvError
from bootsrv.log import event

log = logging.getLogger("bootsrv.dhcp")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # the parent died before prctl: nobody would signal us
        sys.exit(1)


def main() -> int:
    setup = json.loads(sys.stdin.buffer.read())
    _die_with_parent(setup["parent"])

    logsetup.setup(setup["log"]["level"], setup["log"]["format"])
    number = setup["process"]
    config = validate(setup["config"], f"dhcp process {number}")
    signalled = on_signals()  # before the threads start; SIGTERM comes from serve or its death
    wiring = Wiring(config, dhcp_process=number)
    (service,) = dhcp_services(wiring)  # as serve builds it; serve starts us only when it serves DHCP
    try:
        service.start()
    except BootsrvError as exc:  # e.g. a socket it cannot bind: one line, and process 0 says who
        event(log, "dhcp.process_failed", logging.ERROR, process=number, error=str(exc))
        wiring.close()
        return 2
    try:
        os.write(1, READY)
        # Nobody reads the pipe after this line: anything printed later must not fill it and block us.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        wait_until_stopped(threading.Event(), signalled)
    finally:
        service.stop()
        wiring.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
