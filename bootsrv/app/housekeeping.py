"""`bootsrv serve`'s lease housekeeping: every `server.rescan_interval`, leases that ended are
returned to the pool (`LeaseStore.expire`), so DNS stops answering their names and the tables stay
small. Each server of a pair expires only the records it owns.

Correctness does not depend on it: allocation already treats a lapsed lease as free, and every
read catches up with the other server's writes. It is the Solaris in.dhcpd reclaim, on a timer.
"""

from __future__ import annotations

import logging
import threading

from bootsrv.app.wiring import Wiring
from bootsrv.log import event

log = logging.getLogger("bootsrv.leases")


class ExpiryService:
    name = "leases"

    def __init__(self, wiring: Wiring):
        self.wiring = wiring
        self.interval = wiring.config.server.rescan_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        store, now = self.wiring.leases, self.wiring.clock()
        freed = 0
        for network in store.networks():
            freed += store.expire(network, now)
        if freed:
            event(log, "leases.expired", count=freed)
        return freed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception as exc:  # a full disk must not end housekeeping for good
                event(log, "leases.expire_failed", logging.ERROR, error=str(exc)[:200])

    def start(self) -> None:
        self.wiring.leases.networks()  # open (and check) the store at start, not at the first sweep
        self._thread = threading.Thread(target=self._run, name="lease-expiry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def lease_services(wiring: Wiring) -> list[ExpiryService]:
    return [ExpiryService(wiring)] if wiring.config.networks else []
