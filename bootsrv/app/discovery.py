"""The discovery recorder: one thread in each process that serves DHCP, recording the sightings
its DHCP handler reported (bootsrv.machines.discovery) in batches, off the packet path.

It sleeps until a sighting is pending, lets a burst gather for GATHER seconds (a rack powering
on, the DISCOVER retransmissions of the same clients), then writes all of it in one registry
update. Each process of dhcp.processes has its own recorder over the same registry file: the
file is shared and every write is a locked compare-and-swap, so two recorders (or the pair's two
servers) recording the same MAC write it once. A batch that fails (a full disk, a bug) is logged
with its traceback and dropped; its clients are still unknown, so their next DISCOVER reports
them again.
"""

from __future__ import annotations

import logging
import threading

from bootsrv.log import event, failure
from bootsrv.machines.discovery import SightingQueue, record
from bootsrv.machines.model import MachineRegistry

log = logging.getLogger("bootsrv.discovery")

GATHER = 0.5  # seconds a burst gathers before its one write; an auto_profile machine waits this long
IDLE = 1.0  # seconds between looks at the stop flag while nothing is pending


class DiscoveryRecorder:
    name = "discovery"

    def __init__(
        self,
        registry: MachineRegistry,
        queue: SightingQueue,
        limit: int,
        auto_profile: str | None,
        gather: float = GATHER,
    ):
        self.registry = registry
        self.queue = queue
        self.limit = limit
        self.auto_profile = auto_profile
        self.gather = gather
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Counters for the log (and /metrics once there is one): batches written, machines added,
        # filled in, pushed out by the limit, sightings refused for their values.
        self.batches = self.added = self.filled = self.pushed_out = self.refused = self.failed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, then record what is still pending (the DHCP service stops first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.record_pending()
        event(
            log,
            "discovery.stopped",
            batches=self.batches,
            added=self.added,
            filled=self.filled,
            pushed_out=self.pushed_out,
            refused=self.refused,
            failed=self.failed,
            dropped=self.queue.dropped,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.queue.wait(IDLE):
                continue
            self._stop.wait(self.gather)  # returns early on stop: stop() records the rest
            self.record_pending()

    def record_pending(self) -> None:
        """One batch: everything pending, in one registry update."""
        sightings = self.queue.take()
        if not sightings:
            return
        try:
            batch = record(self.registry, sightings, self.limit, self.auto_profile)
        except Exception:  # noqa: BLE001 - a disk or a bug: its clients are reported again at their next DISCOVER
            self.failed += 1
            failure(log, "discovery.failed", sightings=len(sightings))
            return
        added = sum(1 for _, expected in batch.puts if expected is None)
        self.added += added
        self.filled += len(batch.puts) - added
        self.pushed_out += len(batch.removals)
        self.refused += len(batch.refused)
        if batch.changes:
            self.batches += 1
        for mac, why in batch.refused:
            event(log, "discovery.refused", mac=mac, error=why)
        if batch.changes or batch.over_limit:
            # The MACs when they fit on a line (a rack's worth), so `grep <mac>` finds its discovery.
            macs = ",".join(m.mac for m, _ in batch.puts) if len(batch.puts) <= 8 else f"{len(batch.puts)} machines"
            event(
                log,
                "discovery.recorded",
                sightings=len(sightings),
                added=added,
                filled=len(batch.puts) - added,
                pushed_out=len(batch.removals),
                over_limit=len(batch.over_limit),
                dropped=self.queue.dropped,
                macs=macs,
            )
