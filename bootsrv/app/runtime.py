"""Wires a Config to the services and runs them in one process until SIGTERM/SIGINT.

Each service is a small object with `name`, `start()` (binds, then serves in its own thread) and
`stop()`. `build_services(config)` is the one place that decides which services a config enables;
the areas (dhcp, tftp, http, dns) each contribute a factory.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from bootsrv.app.wiring import Wiring
from bootsrv.config import Config
from bootsrv.log import event

log = logging.getLogger("bootsrv.app.runtime")


class Service(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


# Factories by area: each returns the services it runs for a config (possibly none).
ServiceFactory = Callable[[Wiring], Iterable[Service]]


def service_factories() -> list[ServiceFactory]:
    """The areas' factories, imported lazily so `bootsrv config check` needs none of them."""
    factories: list[ServiceFactory] = []
    # First, so it stops last: it records what the other services reported up to their end.
    from bootsrv.app.discovery import discovery_services

    factories.append(discovery_services)
    from bootsrv.app.http import http_services

    factories.append(http_services)
    from bootsrv.app.dns import dns_services

    factories.append(dns_services)
    from bootsrv.app.dhcp import dhcp_services

    factories.append(dhcp_services)
    from bootsrv.app.tftp import tftp_services

    factories.append(tftp_services)
    from bootsrv.app.housekeeping import lease_services

    factories.append(lease_services)
    return factories


def build_services(wiring: Wiring) -> list[Service]:
    return [svc for factory in service_factories() for svc in factory(wiring)]


def run(config: Config, stop: threading.Event | None = None, install_signals: bool = True) -> None:
    """Start every enabled service, block until `stop` is set (or SIGTERM/SIGINT), stop them all."""
    stop = stop or threading.Event()
    signalled = on_signals() if install_signals else []
    wiring = Wiring(config)
    services = build_services(wiring)
    started: list[Service] = []
    try:
        for svc in services:
            svc.start()
            started.append(svc)
        event(log, "ready", server=config.server.name, services=",".join(s.name for s in started) or "none")
        wait_until_stopped(stop, signalled)
    finally:
        for svc in reversed(started):
            try:
                svc.stop()
            except Exception as exc:  # one service failing to stop must not keep others running
                event(log, "stop.failed", logging.ERROR, service=svc.name, error=repr(exc))
        wiring.close()
        event(log, "stopped", server=config.server.name)


def on_signals() -> list[int]:
    """Note SIGTERM and SIGINT in the returned list, and nothing else. A Python handler runs in
    the main thread between two bytecodes, possibly in the middle of that thread's own Event.set
    or logging call; taking those locks again in the handler deadlocks. That happened: a DHCP
    child (PR_SET_PDEATHSIG) gets one SIGTERM per thread of its parent that exits, and hung in
    Event.set inside Event.set."""
    signalled: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: signalled.append(signum))  # list.append takes no lock
    return signalled


def wait_until_stopped(stop: threading.Event, signalled: list[int], poll: float = 0.2) -> None:
    """Block until `stop` is set or a signal was noted (`on_signals`); looks every `poll` s."""
    while not signalled and not stop.wait(poll):
        pass
    if signalled:
        event(log, "signal", signum=signalled[0])
