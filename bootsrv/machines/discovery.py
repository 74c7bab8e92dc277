"""Discovery: machines that netboot unknown, recorded off the DHCP packet path, in batches, bounded.

The DHCP decision only reads the registry; for a MAC it does not know it reports a Sighting
(bootsrv.dhcp.pxe.netboot_action). `SightingQueue` is the Sightings sink the DHCP handler hands
them to: a dict by MAC under a lock, nothing more on the packet path. The HTTP (and TFTP) boot
decision reports an unknown MAC's script fetch there too (bootsrv.machines.plan.boot_decision).
A recorder thread in each serving process (bootsrv.app.discovery) takes what gathered and
`record`s it: one
registry update (`put_many`: one locked, fsync'ed rewrite of the file) for the whole batch. A
rack of 40 machines powering on together is a write or two, not 40 inside DHCP.

What an unknown MAC gets, with `boot.unknown_machines = "discover"` (the default):
- no `boot.auto_profile`: no boot file (local boot); within about a second it is recorded
  "discovered" with what DHCP told (option 93 arch, 97 GUID, 60 vendor class), for an admin to
  adopt.
- `boot.auto_profile` set: its install boot file at once, in the reply to the very DISCOVER that
  made the sighting, as when discovery was written inline; it is recorded "new" (that profile,
  host name node-<mac hex>) within about a second. Its iPXE then asks DHCP again (answered from
  the record, or again as unknown: install) and fetches /boot/<mac>.ipxe, whose boot decision
  (bootsrv.machines.plan.boot_decision) records it itself if the recorder has not yet (and the
  rate below has a token), and moves it to "installing". So it installs at that boot, as before.
A machine the registry knows is never reported (so never changed) by DHCP.

Bounds, against a boot segment that floods DISCOVERs (or boot-script fetches) from random MACs
(issue 16):
- at most `boot.discovery_rate` new machines a second are recorded, `boot.discovery_burst` at
  once (a rack powering on): a `TokenBucket` per process, shared by its recorder and its HTTP
  boot decision. A new MAC past it is not recorded this time (`over_rate`, counted); it is
  reported again at its next DISCOVER. Filling in a known machine costs nothing.
- the queue holds at most `capacity` distinct MACs between two recordings; more are dropped and
  counted (`dropped`), never waited for. A dropped client is reported again at its retransmission.
- the registry keeps at most `boot.discovered_limit` machines that discovery made and nobody has
  acted on yet (`made_by_discovery`: "discovered", or "new" under the automatic host name without
  addresses). Past the limit the least recently updated go first (oldest first out). A real
  machine pushed out is recorded again at its next netboot; machines an admin added or adopted
  and installs under way are never pushed out.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bootsrv.dhcp.pxe import Sighting
from bootsrv.errors import Conflict, InvalidInput
from bootsrv.machines.model import Machine, MachineRegistry, StaleWrite, State
from bootsrv.values import arch_name, normalize_guid, normalize_mac, normalize_profile

QUEUE_CAPACITY = 4096  # distinct MACs waiting for one recording; a second of a 300/s flood is far less


class TokenBucket:
    """How many new machines may be recorded now: `burst` at once, refilled at `rate` a second.

    Time is the caller's (`now`). `available` and `spend` let the recorder plan a batch first
    and pay for what it added after; a concurrent `take` (the HTTP boot decision) can push the
    balance below zero, a debt the refill repays before anything else is granted, so over time
    no more than `rate` a second get through. A clock that steps back refills nothing.
    """

    def __init__(self, rate: float, burst: int):
        if not rate > 0 or burst < 1:
            raise ValueError(f"token bucket: rate {rate} must be > 0 and burst {burst} >= 1")
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at: float | None = None
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self, now: float) -> int:
        with self._lock:
            self._refill(now)
            return max(0, math.floor(self._tokens))

    def spend(self, count: int) -> None:
        with self._lock:
            self._tokens -= count

    def take(self, now: float) -> bool:
        """One token if there is one."""
        with self._lock:
            self._refill(now)
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


@dataclass(frozen=True)
class Seen:
    """A sighting with every value checked and in the registry's form."""

    mac: str
    arch: str | None
    guid: str | None
    vendor_class: str | None
    at: float

    @classmethod
    def of(
        cls,
        mac: str | bytes,
        arch: str | int | None,
        guid: str | bytes | None,
        vendor_class: str | bytes | None,
        at: float,
    ) -> Seen:
        """InvalidInput naming the field when a value does not fit (a multicast MAC, a GUID of
        the wrong length, a binary vendor class)."""
        return cls(
            normalize_mac(mac),
            arch_name(arch) if arch is not None else None,
            normalize_guid(guid) if guid else None,
            _vendor_class(vendor_class) if vendor_class else None,
            at,
        )

    @classmethod
    def of_sighting(cls, sighting: Sighting) -> Seen:
        return cls.of(sighting.mac, sighting.arch, sighting.guid, sighting.vendor_class or None, sighting.seen)


@dataclass(frozen=True)
class Batch:
    """One registry update for a batch of sightings (`plan`'s answer)."""

    puts: tuple[tuple[Machine, int | None], ...] = ()  # (machine, expected revision): added or filled in
    removals: tuple[tuple[str, int], ...] = ()  # (mac, expected revision): pushed out by the limit
    over_limit: tuple[str, ...] = ()  # new MACs not added: the batch alone had more than the limit
    over_rate: tuple[str, ...] = ()  # new MACs not added: more than `admit` (the rate limit) in this batch
    refused: tuple[tuple[str, str], ...] = ()  # (mac, why): sightings whose values do not fit

    @property
    def changes(self) -> bool:
        return bool(self.puts or self.removals)


def auto_hostname(mac: str) -> str:
    return "node-" + mac.replace(":", "")


def made_by_discovery(machine: Machine) -> bool:
    """Recorded by discovery and not acted on since: what `boot.discovered_limit` counts and
    may push out. An auto_profile machine stops counting once it starts installing."""
    if machine.state is State.DISCOVERED:
        return True
    return machine.state is State.NEW and machine.hostname == auto_hostname(machine.mac) and not machine.addresses


def plan(
    machines: Mapping[str, Machine],
    seen: Sequence[Seen],
    limit: int | None,
    auto_profile: str | None,
    admit: int | None = None,
) -> Batch:
    """What to write for `seen` over the registry's `machines`. Pure.

    An unknown MAC becomes "discovered", or with `auto_profile` "new" with that profile and the
    host name node-<mac hex>; with `admit` (the tokens the rate limit has) only that many, the
    first seen first, the others are `over_rate`. A known machine only gets the fields it lacks
    filled in (nothing is overwritten, its state never changes); nothing new, nothing written.
    Then the limit (see the module doc): newest kept, the least recently updated pushed out or,
    if new, not added.
    """
    after: dict[str, tuple[Machine, int | None]] = {}  # mac -> (machine as written, expected revision)
    over_rate: list[str] = []
    new = 0
    for item in _merged(seen):
        current = machines.get(item.mac)
        if current is None:
            if admit is not None and new >= admit:
                over_rate.append(item.mac)
                continue
            new += 1
            state, hostname = (State.DISCOVERED, "") if auto_profile is None else (State.NEW, auto_hostname(item.mac))
            machine = Machine(
                mac=item.mac,
                hostname=hostname,
                state=state,
                profile=auto_profile,
                arch=item.arch,
                guid=item.guid,
                vendor_class=item.vendor_class,
                created=item.at,
                updated=item.at,
            )
            after[item.mac] = (machine, None)
            continue
        filled = dataclasses.replace(
            current,
            arch=current.arch or item.arch,
            guid=current.guid or item.guid,
            vendor_class=current.vendor_class or item.vendor_class,
        )
        if filled != current:
            after[item.mac] = (dataclasses.replace(filled, updated=max(item.at, current.updated)), current.revision)
    removals: list[tuple[str, int]] = []
    over: list[str] = []
    if limit is not None:
        counted = [after[mac][0] if mac in after else m for mac, m in machines.items() if made_by_discovery(m)]
        counted += [m for m, expected in after.values() if expected is None]
        counted.sort(key=lambda m: (m.updated, m.mac), reverse=True)
        for machine in counted[limit:]:  # the least recently updated
            after.pop(machine.mac, None)
            if machine.mac in machines:
                removals.append((machine.mac, machines[machine.mac].revision))
            else:
                over.append(machine.mac)
    return Batch(tuple(after.values()), tuple(removals), tuple(over), tuple(over_rate))


def _merged(seen: Iterable[Seen]) -> list[Seen]:
    """One Seen per MAC: the first sighting, with what later ones told that it did not."""
    out: dict[str, Seen] = {}
    for item in seen:
        first = out.get(item.mac)
        if first is None:
            out[item.mac] = item
        else:
            out[item.mac] = dataclasses.replace(
                first,
                arch=first.arch or item.arch,
                guid=first.guid or item.guid,
                vendor_class=first.vendor_class or item.vendor_class,
            )
    return list(out.values())


def record(
    registry: MachineRegistry,
    sightings: Iterable[Sighting],
    limit: int | None,
    auto_profile: str | None,
    admit: int | None = None,
    attempts: int = 20,
) -> Batch:
    """Write a batch of sightings in one registry update, at most `admit` of them new machines.
    Compare-and-swap: when the peer server or an admin changed the registry meanwhile, the batch
    is planned again over what is there."""
    seen: list[Seen] = []
    refused: list[tuple[str, str]] = []
    for sighting in sightings:
        try:
            seen.append(Seen.of_sighting(sighting))
        except InvalidInput as exc:
            refused.append((sighting.mac, str(exc)))
    batch = record_seen(registry, seen, limit, auto_profile, admit, attempts)
    return dataclasses.replace(batch, refused=tuple(refused))


def record_seen(
    registry: MachineRegistry,
    seen: Sequence[Seen],
    limit: int | None,
    auto_profile: str | None,
    admit: int | None = None,
    attempts: int = 20,
) -> Batch:
    if auto_profile is not None:
        auto_profile = normalize_profile(auto_profile, "boot.auto_profile")
    for _ in range(attempts):
        batch = plan({m.mac: m for m in registry.list()}, seen, limit, auto_profile, admit)
        if not batch.changes:
            return batch
        try:
            registry.put_many(batch.puts, batch.removals)
        except StaleWrite:
            continue
        return batch
    raise Conflict(f"discovery: could not record {len(seen)} sightings ({attempts} concurrent changes)")


class SightingQueue:
    """The Sightings sink (bootsrv.dhcp.pxe) of one process: sightings by MAC until the recorder
    takes them. `saw` is what the DHCP thread pays: a dict update under a lock, never a wait."""

    def __init__(self, capacity: int = QUEUE_CAPACITY):
        self.capacity = capacity
        self.dropped = 0  # sightings of new MACs that found the queue full
        self._lock = threading.Lock()
        self._pending: dict[str, Sighting] = {}
        self._waiting = threading.Event()  # set while something is pending

    def saw(self, sighting: Sighting) -> None:
        with self._lock:
            first = self._pending.get(sighting.mac)
            if first is None:
                if len(self._pending) >= self.capacity:
                    self.dropped += 1
                    return
                self._pending[sighting.mac] = sighting
                wake = len(self._pending) == 1
            else:  # a retransmission: kept only for what the first did not tell
                merged = dataclasses.replace(
                    first,
                    arch=first.arch if first.arch is not None else sighting.arch,
                    guid=first.guid or sighting.guid,
                    vendor_class=first.vendor_class or sighting.vendor_class,
                )
                if merged != first:
                    self._pending[sighting.mac] = merged
                return
        if wake:
            self._waiting.set()

    def wait(self, timeout: float) -> bool:
        """True once something is pending (or already is), False after `timeout` seconds."""
        return self._waiting.wait(timeout)

    def take(self) -> list[Sighting]:
        """Everything pending, oldest first; the queue is empty afterwards."""
        with self._lock:
            taken, self._pending = list(self._pending.values()), {}
            self._waiting.clear()
        return taken

    def __len__(self) -> int:
        return len(self._pending)


def _vendor_class(text: str | bytes) -> str:
    # Option 60 is opaque octets (RFC 2132 9.13); keep printable ASCII only, bounded.
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("latin-1")
    if not isinstance(text, str):
        raise InvalidInput("vendor_class", f"must be text or octets, got {type(text).__name__}")
    if len(text) > 255 or any(not 32 <= ord(c) < 127 for c in text):
        raise InvalidInput("vendor_class", f"{text[:40]!r} must be at most 255 printable ASCII characters")
    return text
