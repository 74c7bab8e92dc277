"""The discovery recorder: one thread in each process that serves DHCP or HTTP, recording the
sightings its DHCP handler and its HTTP boot decision reported (bootsrv.machines.discovery) in
batches, off the packet path.

It sleeps until a sighting is pending, lets a burst gather for GATHER seconds (a rack powering
on, the DISCOVER retransmissions of the same clients), then writes all of it in one registry
update, adding no more new machines than the process' token bucket (`wiring.discovery_rate`)
allows. Each process of dhcp.processes has its own recorder over the same registry file: the
file is shared and every write is a locked compare-and-swap, so two recorders (or the pair's two
servers) recording the same MAC write it once. A batch that fails (a full disk, a bug) is logged
with its traceback and dropped; its clients are still unknown, so their next DISCOVER reports
them again.

What a flood costs shows in the log without a line per packet: `discovery.recorded` once a batch
(at most two a second), `discovery.dropped` at the first drop and then at most once every
DROP_LOG_EVERY seconds (new machines over the rate, sightings that found the queue full, since
the last such line), and the totals in `discovery.stopped`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bootsrv.app.wiring import Wiring
from bootsrv.log import event, failure
from bootsrv.machines.discovery import SightingQueue, TokenBucket, record
from bootsrv.machines.model import MachineRegistry

log = logging.getLogger("bootsrv.discovery")

GATHER = 0.5  # seconds a burst gathers before its one write; an auto_profile machine waits this long
IDLE = 1.0  # seconds between looks at the stop flag while nothing is pending
DROP_LOG_EVERY = 10.0  # seconds between two discovery.dropped lines while a flood goes on


class DiscoveryRecorder:
    name = "discovery"

    def __init__(
        self,
        registry: MachineRegistry,
        queue: SightingQueue,
        limit: int,
        auto_profile: str | None,
        gather: float = GATHER,
        rate: TokenBucket | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.registry = registry
        self.queue = queue
        self.limit = limit
        self.auto_profile = auto_profile
        self.gather = gather
        self.rate = rate  # None: no rate limit (tools and tests)
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Counters for the log (and /metrics once there is one): batches written, machines added,
        # filled in, pushed out by the limit, sightings refused for their values.
        self.batches = self.added = self.filled = self.pushed_out = self.refused = self.failed = 0
        self.over_rate = 0  # new machines left out for want of a token
        self._dropped_logged = (0, 0)  # (over_rate, queue_full) in the last discovery.dropped line
        self._dropped_logged_at: float | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, then record what is still pending (the DHCP and HTTP services stop first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.record_pending()
        over_rate, queue_full = self.dropped()
        event(
            log,
            "discovery.stopped",
            batches=self.batches,
            added=self.added,
            filled=self.filled,
            pushed_out=self.pushed_out,
            refused=self.refused,
            failed=self.failed,
            over_rate=over_rate,
            dropped=queue_full,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.queue.wait(IDLE):
                self._stop.wait(self.gather)  # returns early on stop: stop() records the rest
                self.record_pending()
            self.log_drops()

    def dropped(self) -> tuple[int, int]:
        """(new machines not recorded for the rate, sightings that found the queue full), so far."""
        return self.over_rate, self.queue.dropped

    def log_drops(self) -> None:
        """One discovery.dropped line for what was dropped since the last one, at most every
        DROP_LOG_EVERY seconds: a flood is a few lines a minute, never one per packet."""
        now = self.clock()
        dropped = self.dropped()
        if dropped == self._dropped_logged:
            return
        since = self._dropped_logged_at
        if since is not None and 0 <= now - since < DROP_LOG_EVERY:
            return
        (over_rate, queue_full), (before_rate, before_queue) = dropped, self._dropped_logged
        event(
            log,
            "discovery.dropped",
            logging.WARNING,
            over_rate=over_rate - before_rate,
            queue_full=queue_full - before_queue,
            seconds=round(now - since, 1) if since is not None else "-",
            total_over_rate=over_rate,
            total_queue_full=queue_full,
        )
        self._dropped_logged, self._dropped_logged_at = dropped, now

    def record_pending(self) -> None:
        """One batch: everything pending, in one registry update, within the rate."""
        sightings = self.queue.take()
        if not sightings:
            return
        admit = self.rate.available(self.clock()) if self.rate is not None else None
        try:
            batch = record(self.registry, sightings, self.limit, self.auto_profile, admit)
        except Exception:  # noqa: BLE001 - a disk or a bug: its clients are reported again at their next DISCOVER
            self.failed += 1
            failure(log, "discovery.failed", sightings=len(sightings))
            return
        added = sum(1 for _, expected in batch.puts if expected is None)
        if self.rate is not None:
            self.rate.spend(added)
        self.over_rate += len(batch.over_rate)
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
                over_rate=len(batch.over_rate),
                macs=macs,
            )


def discovery_recorder(wiring: Wiring) -> DiscoveryRecorder:
    """The recorder of this process, over its registry, sightings queue and token bucket."""
    boot = wiring.config.boot
    return DiscoveryRecorder(
        wiring.machines,
        wiring.sightings,
        boot.discovered_limit,
        boot.auto_profile,
        rate=wiring.discovery_rate,
        clock=wiring.clock,
    )


def discovery_services(wiring: Wiring) -> list[DiscoveryRecorder]:
    """`bootsrv serve`'s recorder (process 0): what its DHCP, HTTP and TFTP boot decisions report.
    The other DHCP processes run their own (bootsrv.app.dhcp). None when unknown machines are
    not discovered: nothing is ever reported then."""
    return [discovery_recorder(wiring)] if wiring.config.boot.unknown_machines == "discover" else []
