"""The lease store's data: records, flags, pools and their owners (pure, no I/O).

The shape is Solaris' dhcp_network(4) table (SUNWfiles): one record per address with the client
that holds it, flags, the server that owns it (OWNER_IP), the expiry, a signature and a macro,
plus the hostname that DNS answers. What bootsrv adds is in `Record`'s field comments; what a
record's fields may hold, whichever way it enters the store, is bootsrv.leases.rules'.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from bootsrv.errors import Conflict, InvalidInput

if TYPE_CHECKING:  # for annotations only: the store's data does not load the config machinery
    from bootsrv.config import Config

# Expiry values that are not times (dhcp_network(4): -1 is "infinite", a lease that never ends).
NEVER = -1
NONE = 0


class Flag(enum.IntFlag):
    """dhcp_network(4) flags, same bit values so SUNWfiles tables import unchanged."""

    DYNAMIC = 0x00  # no bit set: an address handed out from a range
    PERMANENT = 0x01  # the lease never expires
    MANUAL = 0x02  # bound to this client by an administrator; never given to anyone else
    UNUSABLE = 0x04  # declined by a client (RFC 2131 4.3.3) or taken out by hand
    BOOTP = 0x08  # given to a BOOTP client (RFC 1542): no lease time, never reclaimed

    def names(self) -> str:
        # From __members__, whose keys are always names (an enum member's .name is None for
        # composites), in definition order; DYNAMIC (0) is "no bit" and only stands alone.
        return "+".join(name for name, f in Flag.__members__.items() if f and f in self) or "DYNAMIC"


_PERMANENT, _MANUAL, _UNUSABLE, _BOOTP = int(Flag.PERMANENT), int(Flag.MANUAL), int(Flag.UNUSABLE), int(Flag.BOOTP)
_HELD_FOR_GOOD = _PERMANENT | _MANUAL | _BOOTP


def client_id_of_mac(mac: bytes | str, htype: int = 1) -> str:
    """The client id a client without option 61 is known by: hardware type + chaddr, as Solaris
    in.dhcpd and RFC 2132 9.14 (type 1 = Ethernet) write it."""
    if isinstance(mac, str):
        mac = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    return f"{htype:02X}{mac.hex().upper()}"


def mac_of_client_id(client_id: str) -> str:
    """The inverse of client_id_of_mac for Ethernet ids (type 01 + 6 octets): aa:bb:cc:dd:ee:ff;
    any other client id is returned as it is."""
    if len(client_id) == 14 and client_id.startswith("01"):
        return ":".join(client_id[i : i + 2] for i in range(2, 14, 2)).lower()
    return client_id


_NOBODY = IPv4Address(0)


@dataclass(frozen=True, init=False)
class Record:
    network: str
    ip: IPv4Address
    client_id: str = ""  # upper-case hex; "" = nobody (Solaris writes "00")
    flags: Flag = Flag.DYNAMIC
    owner: IPv4Address = _NOBODY  # the server that acts for this address (OWNER_IP)
    expiry: int = NONE  # unix seconds; NEVER for permanent; NONE for a free address
    signature: int = 0  # changes on every write; 0 = never written (not in the store)
    macro: str = ""  # Solaris macro / bootsrv profile
    hostname: str = ""  # answered by DNS (A and PTR)
    comment: str = ""

    # The same fields and defaults as above (tests/leases/test_model.py holds them equal). The
    # generated __init__ of a frozen dataclass sets each field through object.__setattr__, which
    # is slower than this one, and a DORA makes four (docs/lease-store.md, "Measurements behind
    # the code").
    def __init__(
        self,
        network: str,
        ip: IPv4Address,
        client_id: str = "",
        flags: Flag = Flag.DYNAMIC,
        owner: IPv4Address = _NOBODY,
        expiry: int = NONE,
        signature: int = 0,
        macro: str = "",
        hostname: str = "",
        comment: str = "",
    ):
        self.__dict__.update(
            network=network,
            ip=ip,
            client_id=client_id,
            flags=flags,
            owner=owner,
            expiry=expiry,
            signature=signature,
            macro=macro,
            hostname=hostname,
            comment=comment,
        )

    # The flag tests below use int(flags): IntFlag's own `&` is Python code, and an ACK asks
    # these questions several times (docs/lease-store.md, "Measurements behind the code").
    @property
    def manual(self) -> bool:
        return bool(int(self.flags) & _MANUAL)

    @property
    def permanent(self) -> bool:
        return bool(int(self.flags) & _PERMANENT) or self.expiry == NEVER

    @property
    def unusable(self) -> bool:
        return bool(int(self.flags) & _UNUSABLE)

    def active(self, now: float) -> bool:
        """Held by a client right now (an offer hold counts: the pair must not offer it twice)."""
        if not self.client_id:
            return False
        return bool(int(self.flags) & _HELD_FOR_GOOD) or self.expiry == NEVER or self.expiry > now

    def reusable(self, now: float) -> bool:
        """May be given to another client: nobody holds it and it is not out of service."""
        flags = int(self.flags)
        if flags & (_MANUAL | _BOOTP):
            return False
        if flags & _UNUSABLE:
            return self.expiry != NEVER and self.expiry <= now
        return not self.active(now)

    def freed(self) -> Record:
        """The address back in the pool: no client, no flags, no expiry (hostname goes too)."""
        return replace(self, client_id="", flags=Flag.DYNAMIC, expiry=NONE, hostname="", macro="", comment="")


_new = object.__new__


def evolve(rec: Record, **changes: object) -> Record:
    """`dataclasses.replace` for the hot path (an ACK): the same new frozen record by copying the
    fields, without replace()'s walk over fields() and keyword __init__. Callers pass real fields."""
    out = _new(Record)
    out.__dict__.update(rec.__dict__, **changes)
    return out


def as_address(value: IPv4Address | str) -> IPv4Address:
    # IPv4Address(an IPv4Address) formats and re-parses it (docs/lease-store.md, "Measurements
    # behind the code"), and the hot path is handed addresses that are already IPv4Address.
    return value if type(value) is IPv4Address else IPv4Address(value)


@dataclass(frozen=True)
class Range:
    start: IPv4Address
    end: IPv4Address
    owner: IPv4Address
    # The bounds as ints, made once: int(IPv4Address) is a Python call, a DORA asks `ip in range`
    # about four times, and the allocator walks the range by number.
    first: int = field(init=False, repr=False, compare=False)
    last: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "first", int(self.start))
        object.__setattr__(self, "last", int(self.end))

    def __contains__(self, ip: IPv4Address) -> bool:
        return self.first <= int(ip) <= self.last

    def __len__(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Pool:
    """What a network lends out: its dynamic ranges with their owners, minus reserved addresses."""

    network: str
    subnet: IPv4Network
    ranges: tuple[Range, ...] = ()
    reserved: frozenset[IPv4Address] = field(default_factory=frozenset)

    def range_of(self, ip: IPv4Address) -> Range | None:
        for rng in self.ranges:
            if ip in rng:
                return rng
        return None

    def lendable(self, ip: IPv4Address) -> bool:
        return self.range_of(ip) is not None and ip not in self.reserved


class Table:
    """One network's records, indexed by address and by client id (what a store holds in memory
    and what the allocation decision reads)."""

    __slots__ = ("records", "clients")

    def __init__(self, records: Iterable[Record] = ()):
        self.records: dict[IPv4Address, Record] = {}
        self.clients: dict[str, set[IPv4Address]] = {}
        for rec in records:
            self.put(rec)

    @classmethod
    def of(cls, records: dict[IPv4Address, Record]) -> Table:
        """A table over `records` (taken, not copied), indexing each address once."""
        table = cls()
        table.records = records
        clients = table.clients
        for ip, rec in records.items():
            if rec.client_id:
                ips = clients.get(rec.client_id)
                if ips is None:
                    clients[rec.client_id] = {ip}
                else:
                    ips.add(ip)
        return table

    def put(self, rec: Record) -> None:
        old = self.records.get(rec.ip)
        if old is not None and old.client_id != rec.client_id:
            self._unindex(old)
        self.records[rec.ip] = rec
        if rec.client_id:
            self.clients.setdefault(rec.client_id, set()).add(rec.ip)

    def drop(self, ip: IPv4Address) -> None:
        old = self.records.pop(ip, None)
        if old is not None:
            self._unindex(old)

    def _unindex(self, rec: Record) -> None:
        ips = self.clients.get(rec.client_id)
        if ips is not None:
            ips.discard(rec.ip)
            if not ips:
                del self.clients[rec.client_id]

    def of_client(self, client_id: str) -> list[Record]:
        return [self.records[ip] for ip in self.clients.get(client_id, ())]


def pools_from_config(config: Config) -> dict[str, Pool]:
    """One Pool per [[networks]] entry; router, DNS servers and every server address are never lent."""
    servers = set(config.server.owner_ips)
    pools = {}
    for net in config.networks:
        reserved = {*net.dns_servers, *servers}
        if net.router is not None:
            reserved.add(net.router)
        ranges = tuple(Range(r.start, r.end, config.range_owner(r)) for r in net.ranges)
        pools[net.name] = Pool(net.name, net.subnet, ranges, frozenset(reserved))
    return pools


class Collision(Conflict):
    """A write based on a stale read: the record changed (signature) since the writer looked."""

    def __init__(self, network: str, ip: IPv4Address, expected: int, found: int):
        self.network, self.ip, self.expected, self.found = network, ip, expected, found
        super().__init__(f"{network}/{ip}: changed by another writer (signature {found}, expected {expected})")


class PoolExhausted(Conflict):
    def __init__(self, network: str):
        self.network = network
        super().__init__(f"{network}: no free address in the ranges this server owns")


class UnknownNetwork(InvalidInput):
    def __init__(self, network: str, known: Iterable[str]):
        super().__init__(
            "network", f"no network {network!r} in the store (known: {', '.join(sorted(known)) or 'none'})"
        )
