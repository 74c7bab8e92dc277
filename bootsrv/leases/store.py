"""The lease store's operations, written once over a few storage primitives.

`LeaseStore` holds every rule of what an offer, an ACK, a release or a decline writes; which
address an offer names is decided by `choose` (bootsrv.leases.allocation, pure), which the offer
runs inside its compare-and-swap loop. An implementation supplies only the primitives: the
current table of a network (`_table`), a compare-and-swap write (`_write`), and waiting for
durability (`_sync`). The in-memory store (bootsrv.leases.memory) and the file store
(bootsrv.leases.files) therefore behave the same, which tests/leases/test_contract.py checks
against both.

Ownership (Solaris OWNER_IP): a handle is opened with the addresses its server acts for. It
allocates only from ranges those addresses own (or that were adopted from a dead peer) and never
rewrites a foreign record except to renew a lease the client holds (the engine decides when that
is allowed: RFC 2131 RENEWING goes to the owner first, see bootsrv.dhcp).

Compare-and-swap: every record carries a signature that changes on every write. A write names the
signature it read (0 = "the address has no record"); if the stored one differs, `Collision` is
raised and nothing is written. Two servers (or two threads) choosing the same free address can
therefore never both get it: one write wins, the other re-reads and takes the next.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from bootsrv.errors import Conflict, InvalidInput, NotFound
from bootsrv.leases.allocation import KEPT, Holds, Lender, acting_for, best_of, choose, lendable
from bootsrv.leases.model import (
    NEVER,
    NONE,
    Collision,
    Flag,
    Pool,
    Record,
    Table,
    UnknownNetwork,
    as_address,
    evolve,
)
from bootsrv.leases.rules import check, client_id_rule, hostname_rule, ip_rule, normalize_client_id, normalize_hostname

_NO_OWNER = IPv4Address(0)

# How often an operation re-reads and retries after losing a compare-and-swap race.
MAX_ATTEMPTS = 64


def new_signature() -> int:
    """A fresh signature: random, so a record deleted and re-created never repeats an old one
    (a counter would let a writer holding a signature from the earlier record win by accident)."""
    return secrets.randbits(62) | 1


class AddressTaken(Conflict):
    """The address is held by another client (the engine NAKs; the CLI reports who holds it)."""

    def __init__(self, record: Record):
        self.record = record
        who = record.client_id + (f" ({record.hostname})" if record.hostname else "")
        super().__init__(f"{record.network}/{record.ip}: held by {who or 'an unusable mark'}")


class Pending:
    """A write in the store that may not be on stable storage yet. `result()` returns its value
    once it is: it leads a group flush of everything written so far when none is running, or
    waits for the one that is, in the calling thread (no flusher thread, no GIL hand-off). Once
    one Pending of a batch has returned, the others written before it return at once."""

    __slots__ = ("_sync", "_token", "_value")

    def __init__(self, sync: Callable[[object], None], token: object, value: object):
        self._sync, self._token, self._value = sync, token, value

    def result(self) -> object:
        self._sync(self._token)
        return self._value


class LeaseStore:
    """Operations over a network-by-network table of records; see the module doc."""

    def __init__(
        self,
        pools: Mapping[str, Pool],
        owner_ips: Iterable[IPv4Address],
        *,
        offers_in_memory: bool = False,
        stripe: tuple[int, int] = (0, 1),
    ):
        self.pools = dict(pools)
        self.owner_ips = tuple(IPv4Address(ip) for ip in owner_ips)
        if not self.owner_ips:
            raise InvalidInput("owner_ips", "a store handle needs at least one owner address")
        self._cursor: dict[str, int] = {}
        self._cursor_lock = threading.Lock()
        # Offer holds kept by this handle instead of written to the store: half the writes of a
        # DORA (bench/bench_dhcp.py). Safe for the pair because each server offers only from
        # ranges it owns, so only this handle could offer these addresses; it is for the one
        # process that serves DHCP for a server (open_store), not for several handles of the
        # same owner (their holds would not see each other; the ACK's compare-and-swap still
        # keeps an address from going to two clients, the second gets a NAK).
        self.offers_in_memory = offers_in_memory
        # (k, n): this handle allocates from its ranges the addresses with int(ip) % n == k first
        # (see bootsrv.leases.allocation). The DHCP processes of one server (dhcp.processes) each
        # take their own stripe, so their in-memory offer holds do not name the same free address.
        index, count = stripe
        if not 0 <= index < count:
            raise InvalidInput("stripe", f"{stripe!r}: want (k, n) with 0 <= k < n")
        self.stripe = (index, count)
        self._holds = Holds()
        self._holds_lock = threading.Lock()
        self._lender_made: tuple[Mapping[IPv4Address, IPv4Address], Lender] | None = None

    # ---- primitives an implementation provides -------------------------------------------
    def _table(self, network: str) -> Table:
        """The current table (an implementation catches up with other writers here)."""
        raise NotImplementedError

    def _write(self, record: Record, expect: int) -> tuple[Record, object]:
        """Store `record` with a new signature if the stored one is `expect` (0: no record);
        else raise Collision. Returns the stored record and a durability token for `_sync`."""
        raise NotImplementedError

    def _erase(self, network: str, ip: IPv4Address, expect: int) -> object:
        raise NotImplementedError

    def _sync(self, token: object) -> None:
        """Return once the write behind `token` is on stable storage."""

    def adoptions(self) -> dict[IPv4Address, IPv4Address]:
        """Dead peer -> the server that took over its addresses (`bootsrv lease adopt`)."""
        return {}

    def _record_adoption(self, peer: IPv4Address, heir: IPv4Address) -> None:
        raise NotImplementedError

    def rescan(self) -> int:
        """Catch up with other writers; returns how many records changed."""
        return 0

    def close(self) -> None:
        pass

    # ---- reads ---------------------------------------------------------------------------
    def networks(self) -> list[str]:
        return list(self.pools)

    def pool(self, network: str) -> Pool:
        try:
            return self.pools[network]
        except KeyError:
            raise UnknownNetwork(network, self.pools) from None

    def get(self, network: str, ip: IPv4Address | str) -> Record | None:
        self.pool(network)
        return self._table(network).records.get(as_address(ip))

    def find(self, network: str, client_id: str, now: float = 0) -> Record | None:
        """The record that speaks for `client_id` on `network` (see `best_of`)."""
        self.pool(network)
        return best_of(self._table(network).of_client(client_id), now)

    def records(self, network: str | None = None) -> list[Record]:
        names = [network] if network is not None else self.networks()
        out: list[Record] = []
        for name in names:
            self.pool(name)
            out.extend(sorted(self._table(name).records.values(), key=lambda r: int(r.ip)))
        return out

    def effective_owner(self, owner: IPv4Address) -> IPv4Address:
        adopted = self.adoptions()
        if not adopted:
            return owner  # the common case, asked several times per DORA
        seen = set()
        while owner in adopted and owner not in seen:  # chains: A adopted B, then C adopted A
            seen.add(owner)
            owner = adopted[owner]
        return owner

    def owns(self, record: Record) -> bool:
        """This handle acts for the record (its owner, or the owner's heir, is one of ours)."""
        return self.effective_owner(record.owner) in self.owner_ips

    def owns_address(self, network: str, ip: IPv4Address) -> bool:
        rng = self.pool(network).range_of(ip)
        return rng is not None and self.effective_owner(rng.owner) in self.owner_ips

    # ---- DHCP operations -----------------------------------------------------------------
    def offer(
        self, network: str, client_id: str, now: float, hold: int, requested: IPv4Address | None = None
    ) -> Record:
        """The address to offer `client_id`, held for `hold` seconds so it is not offered to
        anyone else. A client's binding or live lease is returned unchanged, also when another
        server owns it (the caller decides whether to answer for it). Raises PoolExhausted."""
        pool = self.pool(network)
        _client(client_id)
        for _ in range(MAX_ATTEMPTS):
            table = self._table(network)
            cursor = self._cursor.get(network, 0)  # read unlocked (one dict read); written under the lock
            target, reason, next_cursor = choose(
                pool, table, self._holds, self._lender(), cursor, now, client_id, requested
            )
            if reason in KEPT:
                return target  # the client's binding, live lease or held offer, unchanged
            if next_cursor != cursor:
                with self._cursor_lock:
                    self._cursor[network] = next_cursor
            owner = self._owner_for(pool, target)
            held = Record(network, target.ip, client_id, Flag.DYNAMIC, owner, int(now + hold), 0, target.macro)
            if self.offers_in_memory:
                self._keep_hold(held, now)
                return held
            try:
                stored, _token = self._write(held, target.signature)
            except Collision:
                continue
            return stored  # not synced: an offer is a promise to ourselves, not an acknowledgement
        raise Conflict(f"{network}: gave up offering after {MAX_ATTEMPTS} write collisions")

    def ack(
        self, network: str, ip: IPv4Address, client_id: str, now: float, lease_time: int, hostname: str | None = None
    ) -> Record:
        """Commit the lease of `ip` to `client_id` for `lease_time` seconds; durable on return.
        AddressTaken if someone else holds it; the caller NAKs (RFC 2131 4.3.2)."""
        stored, token = self._ack(network, ip, client_id, now, lease_time, hostname)
        self._sync(token)
        return stored

    def ack_pending(
        self, network: str, ip: IPv4Address, client_id: str, now: float, lease_time: int, hostname: str | None = None
    ) -> Pending:
        """`ack` that returns once the lease is written, before it is durable: `result()` on the
        returned Pending makes it durable (see Pending) and returns the record. The DHCP loop
        decides a whole batch of datagrams, then one `result()` flushes every ACK of the batch."""
        stored, token = self._ack(network, ip, client_id, now, lease_time, hostname)
        return Pending(self._sync, token, stored)

    def _ack(
        self, network: str, ip: IPv4Address | str, client_id: str, now: float, lease_time: int, hostname: str | None
    ) -> tuple[Record, object]:
        pool = self.pool(network)
        ip = as_address(ip)
        _client(client_id)
        if hostname and (why := hostname_rule(hostname)) is not None:
            raise InvalidInput("hostname", why)
        for _ in range(MAX_ATTEMPTS):
            table = self._table(network)
            rec = table.records.get(ip)
            if rec is not None and rec.client_id == client_id and not rec.unusable:
                expiry = NEVER if rec.permanent else int(now + lease_time)
                new = evolve(rec, expiry=expiry, hostname=rec.hostname if hostname is None else hostname)
            elif lendable(pool, table.records, self._holds, self._lender(), ip, now, client_id):
                base = rec or Record(network, ip)
                new = Record(
                    network,
                    ip,
                    client_id,
                    Flag.DYNAMIC,
                    self._owner_for(pool, base),
                    int(now + lease_time),
                    0,
                    base.macro,
                    hostname or "",
                )
            elif rec is not None:
                raise AddressTaken(rec)
            else:
                raise AddressTaken(Record(network, ip, comment="not an address this server lends"))
            try:
                written = self._write(new, rec.signature if rec else 0)
            except Collision:
                continue
            self._drop_hold(network, client_id)
            return written
        raise Conflict(f"{network}/{ip}: gave up after {MAX_ATTEMPTS} write collisions")

    def release(self, network: str, ip: IPv4Address, client_id: str) -> Record | None:
        """DHCPRELEASE (RFC 2131 4.3.4): the address goes back to the pool; a manual binding stays.
        Returns the freed record, or None when the client held nothing there."""
        self._drop_hold(network, client_id)
        return self._change(network, ip, client_id, lambda rec: None if rec.manual else rec.freed())

    def decline(self, network: str, ip: IPv4Address, client_id: str, now: float, hold: int) -> Record | None:
        """DHCPDECLINE (RFC 2131 4.3.3): someone else answers at that address; keep it out of
        service for `hold` seconds (an administrator may clear it earlier)."""

        def mark(rec: Record) -> Record:
            if rec.manual:
                return replace(rec, flags=rec.flags | Flag.UNUSABLE)
            return replace(rec.freed(), flags=Flag.UNUSABLE, expiry=int(now + hold), comment=f"declined by {client_id}")

        held = self._holds.of_client(network, client_id, now)
        self._drop_hold(network, client_id)
        if held is not None and held.ip == as_address(ip) and self.get(network, ip) is None:
            # Declined while only held in memory: the mark still goes to the store, for the peer too.
            mark_only = replace(
                held, client_id="", flags=Flag.UNUSABLE, expiry=int(now + hold), comment=f"declined by {client_id}"
            )
            try:
                stored, token = self._write(mark_only, 0)
            except Collision:
                return self._change(network, ip, client_id, mark)
            self._sync(token)
            return stored
        return self._change(network, ip, client_id, mark)

    def _change(
        self, network: str, ip: IPv4Address | str, client_id: str, change: Callable[[Record], Record | None]
    ) -> Record | None:
        self.pool(network)
        ip = as_address(ip)
        for _ in range(MAX_ATTEMPTS):
            rec = self._table(network).records.get(ip)
            if rec is None or rec.client_id != client_id:
                return None
            new = change(rec)
            if new is None:
                return None
            try:
                stored, token = self._write(new, rec.signature)
            except Collision:
                continue
            self._sync(token)
            return stored
        raise Conflict(f"{network}/{ip}: gave up after {MAX_ATTEMPTS} write collisions")

    def expire(self, network: str, now: float) -> int:
        """Free the dynamic leases (and lapsed offer holds) that ended before `now`; returns how many."""
        freed = 0
        for rec in list(self._table(network).records.values()):
            if rec.client_id and not rec.active(now) and self.owns(rec):
                try:
                    self._write(rec.freed(), rec.signature)  # lost on a crash? then freed again next time
                    freed += 1
                except Collision:
                    pass
        return freed

    # ---- administration (bootsrv lease ..., machines, guests) -----------------------------
    def bind(
        self,
        network: str,
        ip: IPv4Address | str,
        client_id: str,
        hostname: str = "",
        *,
        now: float = 0,
        flags: Flag = Flag.MANUAL | Flag.PERMANENT,
        macro: str = "",
        comment: str = "",
    ) -> Record:
        """A fixed binding: DHCP gives `ip` to `client_id` only, DNS answers `hostname`. Refused
        when another client holds the address or another record has the hostname."""
        pool = self.pool(network)
        ip = _address(ip, pool)
        client_id = normalize_client_id(client_id)
        hostname = normalize_hostname(hostname)
        if ip in pool.reserved:
            raise Conflict(f"{network}/{ip}: reserved (router, DNS or server address)")
        for _ in range(MAX_ATTEMPTS):
            rec = self._table(network).records.get(ip)
            if rec is not None and rec.client_id != client_id and (rec.active(now) or rec.unusable):
                raise AddressTaken(rec)
            self._check_hostname(hostname, network, ip)
            owner = self._owner_for(pool, rec or Record(network, ip))
            new = Record(
                network,
                ip,
                client_id,
                Flag(flags),
                owner,
                NEVER if flags & Flag.PERMANENT else NONE,
                0,
                macro,
                hostname,
                comment,
            )
            check(new, pool)
            try:
                stored, token = self._write(new, rec.signature if rec else 0)
            except Collision:
                continue
            self._sync(token)
            return stored
        raise Conflict(f"{network}/{ip}: gave up after {MAX_ATTEMPTS} write collisions")

    def modify(self, network: str, ip: IPv4Address | str, expect: int | None = None, **changes: Any) -> Record:
        """Change fields of one record (pntadm -M); `expect` guards against a concurrent change.
        `changes` are Record fields by name, each value of its field's type (names are checked and
        client_id, hostname, flags and owner normalised below)."""
        pool = self.pool(network)
        ip = _address(ip, pool)
        allowed = {"client_id", "flags", "owner", "expiry", "macro", "hostname", "comment"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(sorted(unknown)[0], f"not a record field (fields: {', '.join(sorted(allowed))})")
        if "client_id" in changes and changes["client_id"]:
            changes["client_id"] = normalize_client_id(changes["client_id"])
        if "hostname" in changes:
            changes["hostname"] = normalize_hostname(changes["hostname"])
            self._check_hostname(changes["hostname"], network, ip)
        if "flags" in changes and isinstance(changes["flags"], int) and 0 <= changes["flags"] <= 15:
            changes["flags"] = Flag(changes["flags"])  # anything else is left to the flags rule (IntFlag takes 99)
        if "owner" in changes:
            try:
                changes["owner"] = IPv4Address(changes["owner"])
            except ValueError:
                raise InvalidInput("owner", f"{changes['owner']!r} is not an IPv4 address") from None
        rec = self._table(network).records.get(ip)
        if rec is None:
            raise NotFound(f"{network}/{ip}: no record")
        new = check(replace(rec, **changes), pool)
        stored, token = self._write(new, rec.signature if expect is None else expect)
        self._sync(token)
        return stored

    def delete(self, network: str, ip: IPv4Address | str, expect: int | None = None) -> Record:
        pool = self.pool(network)
        ip = _address(ip, pool)
        rec = self._table(network).records.get(ip)
        if rec is None:
            raise NotFound(f"{network}/{ip}: no record")
        self._sync(self._erase(network, ip, rec.signature if expect is None else expect))
        return rec

    def adopt(self, peer: IPv4Address | str) -> int:
        """Take over a dead peer's addresses for good: its ranges become ours and so do its
        records (clients keep their leases). Returns how many records changed owner."""
        peer = IPv4Address(peer)
        if peer in self.owner_ips:
            raise InvalidInput("peer", f"{peer} is one of this server's own addresses")
        heir = self.owner_ips[0]
        self._record_adoption(peer, heir)
        moved, token = 0, None
        for network in self.networks():
            for rec in list(self._table(network).records.values()):
                if rec.owner == peer:
                    try:
                        _stored, token = self._write(replace(rec, owner=heir), rec.signature)
                        moved += 1
                    except Collision:
                        pass  # changed meanwhile: the writer kept or set its owner; ranges still adopted
        if token is not None:
            self._sync(token)
        return moved

    def load(self, records: Iterable[Record], *, now: float = 0, replace_held: bool = False) -> int:
        """Import records as given (a SUNWfiles migration, `bootsrv lease import`): every one is
        checked first (known network, the record rules of bootsrv.leases.rules, not held by
        another client unless `replace_held`, no host name twice), then all are written; durable
        on return.
        Returns how many were written. Only a concurrent writer changing one of these addresses
        between the check and the write can stop it half-way (Collision names the address)."""
        records = list(records)
        seen: set[tuple[str, IPv4Address]] = set()
        names: dict[str, tuple[str, IPv4Address]] = {}
        for rec in records:
            check(rec, self.pool(rec.network), f"{rec.network}/{rec.ip}")
            if (rec.network, rec.ip) in seen:
                raise InvalidInput("ip", f"{rec.network}/{rec.ip} appears twice")
            seen.add((rec.network, rec.ip))
            current = self._table(rec.network).records.get(rec.ip)
            if (
                current is not None
                and not replace_held
                and current.client_id
                and rec.client_id != current.client_id
                and (current.active(now) or current.unusable)
            ):
                raise AddressTaken(current)
            if rec.hostname:
                if rec.hostname in names:
                    raise Conflict(f"hostname: {rec.hostname!r} is given to {names[rec.hostname][1]} and {rec.ip}")
                names[rec.hostname] = (rec.network, rec.ip)
                self._check_hostname(rec.hostname, rec.network, rec.ip)
        token = None
        for rec in records:
            current = self._table(rec.network).records.get(rec.ip)
            _stored, token = self._write(rec, current.signature if current else 0)
        if token is not None:
            self._sync(token)
        return len(records)

    # ---- helpers -------------------------------------------------------------------------
    def _check_hostname(self, hostname: str, network: str, ip: IPv4Address) -> None:
        if not hostname:
            return
        for name in self.networks():
            for rec in list(self._table(name).records.values()):  # a snapshot: other threads catch up meanwhile
                if rec.hostname == hostname and (name, rec.ip) != (network, ip):
                    raise Conflict(
                        f"hostname: {hostname!r} is already {name}/{rec.ip} ({rec.client_id or 'no client'})"
                    )

    def _owner_for(self, pool: Pool, record: Record) -> IPv4Address:
        if record.signature and record.owner != _NO_OWNER:
            return record.owner
        rng = pool.range_of(record.ip)
        if rng is not None:
            return self.effective_owner(rng.owner)
        return self.owner_ips[0]

    def _lender(self) -> Lender:
        """Who this handle is for the allocation decision; made again only after an adoption."""
        adopted = self.adoptions()
        made = self._lender_made
        if made is None or (made[0] is not adopted and made[0] != adopted):
            made = self._lender_made = (adopted, Lender(acting_for(self.owner_ips, adopted), self.stripe))
        return made[1]

    # ---- offer holds kept in memory (offers_in_memory) -------------------------------------
    def _keep_hold(self, held: Record, now: float) -> None:
        with self._holds_lock:
            self._holds.keep(held, now)

    def _drop_hold(self, network: str, client_id: str) -> None:
        if not self._holds.by_client:
            return
        with self._holds_lock:
            self._holds.drop(network, client_id)


def _address(value: object, pool: Pool) -> IPv4Address:
    try:
        ip = IPv4Address(str(value))
    except ValueError:
        raise InvalidInput("ip", f"{value!r} is not an IPv4 address") from None
    why = ip_rule(ip, pool)
    if why is not None:
        raise InvalidInput("ip", why)
    return ip


def _client(client_id: str) -> None:
    """A DHCP operation's client: someone (not nobody), by an id the record rules accept."""
    why = client_id_rule(client_id) if client_id else "a lease needs a client"
    if why is not None:
        raise InvalidInput("client_id", why)
