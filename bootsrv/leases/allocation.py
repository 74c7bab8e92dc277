"""Which address a server offers a client: one pure decision, values in and a `Choice` out.

`choose` reads a network's table, this server's own offer holds, who the server is (`Lender`:
the owner addresses it acts for and its stripe), where the last search stopped (the cursor) and
the time; it reads no file, no clock and no store. `LeaseStore.offer` runs it inside its
compare-and-swap loop and writes what it chose; `lendable` is the same rule for the address an
ACK names (bootsrv.leases.store).

The order is RFC 2131 4.3.1's:

1. the client's binding (MANUAL) or live lease is kept as it is, also when a peer owns it (the
   DHCP engine decides whether to answer for a peer's lease: RENEWING goes to the owner first);
2. an offer this server still holds for the client is offered again, while it is lendable;
3. its previous address (its lease that ended: a release frees the record, which then names no
   client), if this server owns that record, the address is in a range and not reserved, not
   declined (UNUSABLE), not held for another client;
4. the address it asked for (option 50), if lendable: in a range this server owns, not reserved,
   not held for another client, and either without a record or reusable and owned by us;
5. a new address: the first of this server's ranges that has no record, or a record without a
   client (released, expired by housekeeping), searching on from the cursor so that addresses
   are handed out in turn; else the lease that ended longest ago (RFC 2131 2.2: when addresses
   run out, expired ones are reused, "the least recently assigned" for example), and if there is
   none `PoolExhausted`.

Ownership (Solaris OWNER_IP): only ranges whose owner this server acts for are searched, and a
lapsed record is reused only when it is ours; a peer's ranges are lent only after `bootsrv lease
adopt` (`acting_for`).

A stripe (k, n) is one of the n DHCP processes of a server (dhcp.processes): its own addresses
(int(ip) % n == k) come first, so the processes' in-memory offer holds do not name the same free
address. Only when its stripe has nothing free does a process take another stripe's address: the
other process may hold that address as an offer too, and whichever ACK commits first wins while
the other client gets a NAK and starts over, which beats turning clients away while the pool
has room (MACs do not spread evenly over the processes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import NamedTuple

from bootsrv.leases.model import NEVER, Pool, PoolExhausted, Range, Record, Table

# Why an address was chosen (Choice.reason). The first three keep what the client has.
BINDING = "its binding"
LEASE = "its live lease"
HOLD = "the offer held for it"
PREVIOUS = "its previous address"
REQUESTED = "the address it asked for"
FRESH = "the next free address"
LAPSED = "the lease that ended longest ago"
KEPT = frozenset({BINDING, LEASE, HOLD})


def acting_for(
    owner_ips: tuple[IPv4Address, ...], adoptions: Mapping[IPv4Address, IPv4Address]
) -> tuple[IPv4Address, ...]:
    """The owner addresses a server with `owner_ips` acts for: its own unless a peer adopted them,
    and every peer whose chain of adoptions (A adopted B, then C adopted A) ends at one of its own.
    A tuple, not a set: there are one or two, and `in` on a tuple tries identity first where a
    set would hash an IPv4Address, which is Python code, on every question."""
    acting: list[IPv4Address] = []
    for owner in (*owner_ips, *adoptions):
        heir, seen = owner, set()
        while heir in adoptions and heir not in seen:
            seen.add(heir)
            heir = adoptions[heir]
        if heir in owner_ips and owner not in acting:
            acting.append(owner)
    return tuple(acting)


@dataclass(frozen=True, slots=True)
class Lender:
    """The server that decides: the owner addresses it acts for (`acting_for`) and its stripe
    (k, n) among the DHCP processes of the server."""

    acting_for: tuple[IPv4Address, ...]
    stripe: tuple[int, int] = (0, 1)

    def owns(self, record: Record) -> bool:
        return record.owner in self.acting_for

    def owns_address(self, pool: Pool, ip: IPv4Address) -> bool:
        rng = pool.range_of(ip)
        return rng is not None and rng.owner in self.acting_for

    def ranges(self, pool: Pool) -> list[Range]:
        return [r for r in pool.ranges if r.owner in self.acting_for]


class Holds:
    """The offers a server holds in memory instead of writing them (LeaseStore.offers_in_memory),
    by address and by client. A hold counts until its expiry; lapsed ones are swept now and then.
    Not locked: the store takes its lock around `keep` and `drop`; readers take what they find."""

    __slots__ = ("by_address", "by_client")

    def __init__(self) -> None:
        self.by_address: dict[tuple[str, IPv4Address], Record] = {}
        self.by_client: dict[tuple[str, str], IPv4Address] = {}

    def __len__(self) -> int:
        return len(self.by_client)

    def of_client(self, network: str, client_id: str, now: float) -> Record | None:
        """The live hold for `client_id` on `network`, if any."""
        ip = self.by_client.get((network, client_id))
        held = self.by_address.get((network, ip)) if ip is not None else None
        return held if held is not None and held.client_id == client_id and held.expiry > now else None

    def for_other(self, network: str, ip: IPv4Address, now: float, client_id: str = "") -> bool:
        """A live hold on `ip` for a client other than `client_id` ("": for any client)."""
        held = self.by_address.get((network, ip))
        return held is not None and held.client_id != client_id and held.expiry > now

    def keep(self, held: Record, now: float) -> None:
        """Hold `held` for its client, instead of the client's earlier hold."""
        old = self.by_client.get((held.network, held.client_id))
        if old is not None:
            self.by_address.pop((held.network, old), None)
        self.by_address[(held.network, held.ip)] = held
        self.by_client[(held.network, held.client_id)] = held.ip
        if len(self.by_address) > 4096 and len(self.by_address) & 1023 == 0:
            for key, rec in list(self.by_address.items()):  # lapsed offers (clients that never asked)
                if rec.expiry <= now:
                    self.by_address.pop(key, None)
                    self.by_client.pop((rec.network, rec.client_id), None)

    def drop(self, network: str, client_id: str) -> None:
        ip = self.by_client.pop((network, client_id), None)
        if ip is not None:
            self.by_address.pop((network, ip), None)


class Choice(NamedTuple):
    """What `choose` decided: `record` is the client's own record to answer with unchanged (a
    reason in KEPT), or the record the offer replaces (signature 0: the address has none yet).
    `cursor` is where the next search for a free address starts. A NamedTuple, not a frozen
    dataclass: one is made for every DISCOVER, and a frozen dataclass's __init__ is slower."""

    record: Record
    reason: str
    cursor: int

    @property
    def kept(self) -> bool:
        return self.reason in KEPT


def best_of(records: list[Record], now: float) -> Record | None:
    """The record that speaks for a client: its manual binding, else its live lease, else the
    lease that ended last (RFC 2131 4.3.1: offer the client its previous address if free)."""
    if not records:
        return None
    return max(records, key=lambda r: (r.manual, r.active(now), r.expiry if r.expiry != NEVER else 2**62, int(r.ip)))


def lendable(
    pool: Pool,
    records: Mapping[IPv4Address, Record],
    holds: Holds,
    lender: Lender,
    ip: IPv4Address,
    now: float,
    client_id: str = "",
) -> bool:
    """May `ip` go to `client_id`: in a range this server owns and not reserved, not held for
    another client, and without a record or with one that is reusable and ours."""
    if not pool.lendable(ip) or not lender.owns_address(pool, ip):
        return False
    if holds.for_other(pool.network, ip, now, client_id):
        return False
    rec = records.get(ip)
    return rec is None or (rec.reusable(now) and lender.owns(rec))


def choose(
    pool: Pool,
    table: Table,
    holds: Holds,
    lender: Lender,
    cursor: int,
    now: float,
    client_id: str,
    requested: IPv4Address | None = None,
) -> Choice:
    """The address to offer `client_id` on `pool`'s network (see the module doc for the rules,
    in order). Raises PoolExhausted when there is none."""
    current = best_of(table.of_client(client_id), now)
    if current is not None and current.manual:
        return Choice(current, BINDING, cursor)
    if current is not None and current.active(now):
        return Choice(current, LEASE, cursor)
    network, records = pool.network, table.records
    mine = holds.of_client(network, client_id, now)
    if mine is not None and lendable(pool, records, holds, lender, mine.ip, now, client_id):
        return Choice(mine, HOLD, cursor)
    if (
        current is not None
        and lender.owns(current)
        and pool.lendable(current.ip)
        and not current.unusable
        and not holds.for_other(network, current.ip, now, client_id)
    ):
        return Choice(current, PREVIOUS, cursor)
    if requested is not None and lendable(pool, records, holds, lender, requested, now, client_id):
        return Choice(records.get(requested) or Record(network, requested), REQUESTED, cursor)
    return _allocate(pool, records, holds, lender, cursor, now)


def _allocate(
    pool: Pool, records: Mapping[IPv4Address, Record], holds: Holds, lender: Lender, cursor: int, now: float
) -> Choice:
    """Rule 5 of the module doc: a free address from the cursor on, own stripe first; else the
    lapsed record that ended longest ago, own stripe first."""
    ranges = lender.ranges(pool)
    total = sum(len(r) for r in ranges)
    if not total:
        raise PoolExhausted(pool.network)
    network = pool.network
    start = cursor % total
    index, count = lender.stripe
    for own_stripe in (True, False) if count > 1 else (False,):
        for i in _rotation(start, total):
            n = _nth(ranges, i)
            if own_stripe and n % count != index:
                continue  # walked by number: an IPv4Address only for a candidate of the stripe
            ip = IPv4Address(n)
            if ip in pool.reserved or holds.for_other(network, ip, now):
                continue
            rec = records.get(ip)
            if rec is None or (not rec.client_id and not rec.unusable and not rec.manual):
                return Choice(rec or Record(network, ip), FRESH, i + 1)
    lapsed = [
        r
        for r in list(records.values())  # a snapshot: other threads may add records meanwhile
        if pool.lendable(r.ip)
        and lender.owns_address(pool, r.ip)
        and r.reusable(now)
        and lender.owns(r)
        and not holds.for_other(network, r.ip, now)
    ]
    if lapsed:
        # Our stripe's first (False sorts first), then the one that ended longest ago.
        return Choice(min(lapsed, key=lambda r: (int(r.ip) % count != index, r.expiry, int(r.ip))), LAPSED, cursor)
    raise PoolExhausted(pool.network)


def _nth(ranges: list[Range], i: int) -> int:
    """The i-th address (as an int) of the ranges taken one after another."""
    for rng in ranges:
        size = len(rng)
        if i < size:
            return rng.first + i
        i -= size
    raise IndexError(i)


def _rotation(start: int, n: int) -> Iterator[int]:
    yield from range(start, n)
    yield from range(start)
