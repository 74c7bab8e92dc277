"""The allocation decision as a named table: a situation (the table's records, this server's
offer holds, its stripe and owners, the cursor, the address asked for) -> the address offered and
why. Then a hypothesis property over random situations: whatever is chosen was lendable."""

from __future__ import annotations

from ipaddress import IPv4Address as IP
from ipaddress import IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootsrv.leases.allocation import (
    BINDING,
    FRESH,
    HOLD,
    KEPT,
    LAPSED,
    LEASE,
    PREVIOUS,
    REQUESTED,
    Holds,
    Lender,
    acting_for,
    choose,
    lendable,
)
from bootsrv.leases.model import NEVER, Flag, Pool, PoolExhausted, Range, Record, Table

NET = "public"
NOW = 1_700_000_000
A = IP("10.0.0.1")  # this server
B = IP("10.0.0.2")  # its peer
CLIENT = "01525400000001"  # the client asking
OTHER = "01525400000002"  # another client

# This server's ranges, in order: .10 .11 .12 .13 then .30 .31 (six addresses, cursor 0-5); .12
# is reserved (a router, say). The peer owns .20-.21.
POOL = Pool(
    NET,
    IPv4Network("10.0.0.0/24"),
    (
        Range(IP("10.0.0.10"), IP("10.0.0.13"), A),
        Range(IP("10.0.0.20"), IP("10.0.0.21"), B),
        Range(IP("10.0.0.30"), IP("10.0.0.31"), A),
    ),
    frozenset({A, B, IP("10.0.0.12")}),
)


def ip(last: int) -> IP:
    return IP(f"10.0.0.{last}")


def lease(last, client=OTHER, expiry=NOW + 600, owner=A) -> Record:
    return Record(NET, ip(last), client, Flag.DYNAMIC, owner, expiry, signature=last)


def released(last, owner=A) -> Record:
    return Record(NET, ip(last), "", Flag.DYNAMIC, owner, 0, signature=last, macro="pxe")


def declined(last, until) -> Record:
    return Record(NET, ip(last), "", Flag.UNUSABLE, A, until, signature=last, comment=f"declined by {OTHER}")


def bound(last, client=OTHER) -> Record:
    return Record(NET, ip(last), client, Flag.MANUAL | Flag.PERMANENT, A, NEVER, signature=last)


def bootp(last, client=OTHER) -> Record:
    return Record(NET, ip(last), client, Flag.BOOTP, A, NOW - 1000, signature=last)


def held(last, client=OTHER, expiry=NOW + 30) -> Record:
    return Record(NET, ip(last), client, Flag.DYNAMIC, A, expiry)


def busy(*lasts) -> list[Record]:
    """Live leases of other clients on `lasts`."""
    return [lease(n, client=f"0152540000{n:04X}") for n in lasts]


ALL_OURS = (10, 11, 13, 30, 31)  # every address of ours but the reserved .12

CASES = [
    # (id, situation, expected: (last octet, reason, cursor after) or PoolExhausted)
    # -- a new address (rule 5) --
    ("first free in first range", {}, (10, FRESH, 1)),
    ("skips a live lease", dict(records=busy(10)), (11, FRESH, 2)),
    ("skips a reserved address", dict(records=busy(10, 11)), (13, FRESH, 4)),
    ("next range of ours, the peer's skipped", dict(records=busy(10, 11, 13)), (30, FRESH, 5)),
    ("a released record is free", dict(records=[released(10)]), (10, FRESH, 1)),
    ("expired lease waits while fresh addresses remain", dict(records=[lease(10, expiry=NOW - 10)]), (11, FRESH, 2)),
    ("expired lease is reusable", dict(records=[lease(10, expiry=NOW - 10), *busy(11, 13, 30, 31)]), (10, LAPSED, 0)),
    (
        "expiry at this very second is over",
        dict(records=[lease(10, expiry=NOW), *busy(11, 13, 30, 31)]),
        (10, LAPSED, 0),
    ),
    (
        "the lease that ended longest ago first",
        dict(records=[lease(10, expiry=NOW - 10), lease(11, expiry=NOW - 500), *busy(13, 30, 31)]),
        (11, LAPSED, 0),
    ),
    ("held for another client", dict(holds=[held(10)]), (11, FRESH, 2)),
    ("a lapsed hold holds nothing", dict(holds=[held(10, expiry=NOW - 1)]), (10, FRESH, 1)),
    (
        "expired lease held for another client is skipped",
        dict(records=[lease(10, expiry=NOW - 10), *busy(11, 13, 30, 31)], holds=[held(10)]),
        PoolExhausted,
    ),
    ("UNUSABLE skipped", dict(records=[declined(10, NOW + 600)]), (11, FRESH, 2)),
    (
        "UNUSABLE comes back after its hold, as a lapsed one",
        dict(records=[declined(10, NOW - 1), *busy(11, 13, 30, 31)]),
        (10, LAPSED, 0),
    ),
    ("UNUSABLE for good is never lent", dict(records=[declined(10, NEVER), *busy(11, 13, 30, 31)]), PoolExhausted),
    ("another client's binding skipped", dict(records=[bound(10)]), (11, FRESH, 2)),
    ("BOOTP lease never reclaimed", dict(records=[bootp(10), *busy(11, 13, 30, 31)]), PoolExhausted),
    ("exhausted, though the peer's range is free", dict(records=busy(*ALL_OURS)), PoolExhausted),
    (
        "peer's lapsed record in our range is not reused",
        dict(records=[lease(10, expiry=NOW - 10, owner=B), *busy(11, 13, 30, 31)]),
        PoolExhausted,
    ),
    ("no range of ours at all", dict(owners=(IP("10.0.0.3"),)), PoolExhausted),
    ("adopted peer's range is lent", dict(records=busy(*ALL_OURS), adopted={B: A}), (20, FRESH, 5)),
    (
        "adopted twice: A took B, then C took A",
        dict(owners=(IP("10.0.0.3"),), adopted={B: A, A: IP("10.0.0.3")}),
        (10, FRESH, 1),
    ),
    ("our own range after a peer adopted us is not ours", dict(adopted={A: B}), PoolExhausted),
    ("stripe 0 of a two-process server: even addresses", dict(stripe=(0, 2)), (10, FRESH, 1)),
    ("stripe 1 of a two-process server: odd addresses", dict(stripe=(1, 2)), (11, FRESH, 2)),
    ("stripe 1 of 2 after its first address", dict(stripe=(1, 2), records=busy(11)), (13, FRESH, 4)),
    ("stripe full: another stripe's free address", dict(stripe=(1, 2), records=busy(11, 13, 31)), (10, FRESH, 1)),
    (
        "lapsed: own stripe first, though it ended later",
        dict(stripe=(1, 2), records=[lease(10, expiry=NOW - 500), lease(11, expiry=NOW - 10), *busy(13, 30, 31)]),
        (11, LAPSED, 0),
    ),
    ("cursor continues where the last search stopped", dict(cursor=1), (11, FRESH, 2)),
    ("cursor on a taken address moves past it", dict(cursor=4, records=busy(30)), (31, FRESH, 6)),
    ("cursor wraps", dict(cursor=5, records=busy(31)), (10, FRESH, 1)),
    ("cursor beyond the end wraps", dict(cursor=8), (13, FRESH, 4)),
    (
        "cursor kept when a lapsed lease is reused",
        dict(cursor=3, records=[lease(10, expiry=NOW - 10), *busy(11, 13, 30, 31)]),
        (10, LAPSED, 3),
    ),
    # -- what the client has (rules 1-4) --
    ("its binding, outside any range", dict(records=[bound(50, CLIENT)]), (50, BINDING, 0)),
    ("its binding before a live lease", dict(records=[lease(13, CLIENT), bound(50, CLIENT)]), (50, BINDING, 0)),
    ("its live lease", dict(records=[lease(13, CLIENT)]), (13, LEASE, 0)),
    ("its live lease at the peer", dict(records=[lease(20, CLIENT, owner=B)]), (20, LEASE, 0)),
    ("the offer held for it", dict(holds=[held(13, CLIENT)]), (13, HOLD, 0)),
    (
        "the offer held for it, taken meanwhile, is not offered again",
        dict(holds=[held(13, CLIENT)], records=busy(13)),
        (10, FRESH, 1),
    ),
    ("its previous address", dict(records=[lease(13, CLIENT, expiry=NOW - 10)]), (13, PREVIOUS, 0)),
    (
        "its previous address held for another client",
        dict(records=[lease(13, CLIENT, expiry=NOW - 10)], holds=[held(13)]),
        (10, FRESH, 1),
    ),
    (
        "its previous address out of service (UNUSABLE)",
        dict(records=[Record(NET, ip(13), CLIENT, Flag.UNUSABLE, A, NOW - 10, 13)]),
        (10, FRESH, 1),
    ),
    ("its previous address at the peer", dict(records=[lease(20, CLIENT, expiry=NOW - 10, owner=B)]), (10, FRESH, 1)),
    (
        "its previous address before the one it asked for",
        dict(records=[lease(13, CLIENT, expiry=NOW - 10)], requested=11),
        (13, PREVIOUS, 0),
    ),
    ("the address it asked for", dict(requested=13), (13, REQUESTED, 0)),
    ("asked for another client's live lease", dict(requested=13, records=busy(13)), (10, FRESH, 1)),
    (
        "asked for another client's expired lease",
        dict(requested=13, records=[lease(13, expiry=NOW - 10)]),
        (13, REQUESTED, 0),
    ),
    (
        "asked for the peer's expired lease in our range",
        dict(requested=13, records=[lease(13, expiry=NOW - 10, owner=B)]),
        (10, FRESH, 1),
    ),
    ("asked for an address held for another client", dict(requested=13, holds=[held(13)]), (10, FRESH, 1)),
    ("asked for an address of the peer's range", dict(requested=20), (10, FRESH, 1)),
    ("asked for a reserved address", dict(requested=12), (10, FRESH, 1)),
    ("asked for an address outside the ranges", dict(requested=50), (10, FRESH, 1)),
]


def situation(records=(), holds=(), stripe=(0, 1), cursor=0, owners=(A,), adopted=None, requested=None):
    keep = Holds()
    for hold in holds:
        keep.keep(hold, NOW)
    lender = Lender(acting_for(owners, adopted or {}), stripe)
    return Table(records), keep, lender, cursor, (ip(requested) if requested is not None else None)


@pytest.mark.parametrize("given_, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_choose(given_, expected):
    table, holds, lender, cursor, requested = situation(**given_)
    if expected is PoolExhausted:
        with pytest.raises(PoolExhausted):
            choose(POOL, table, holds, lender, cursor, NOW, CLIENT, requested)
        return
    choice = choose(POOL, table, holds, lender, cursor, NOW, CLIENT, requested)
    last, reason, after = expected
    assert (choice.record.ip, choice.reason, choice.cursor) == (ip(last), reason, after)
    if choice.kept:  # the client's own record or hold, unchanged
        assert choice.record.client_id == CLIENT
    else:  # the record the offer replaces: the stored one (its signature, macro) or a new one
        assert choice.record == (table.records.get(choice.record.ip) or Record(NET, choice.record.ip))


def test_names_are_unique():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))


# ---- the property: whatever is chosen could be lent ------------------------------------------

ADDRESSES = [ip(n) for n in (10, 11, 12, 13, 20, 21, 30, 31, 50)]
CLIENTS = [CLIENT, OTHER, "01525400000003"]
FLAGS = [
    Flag.DYNAMIC,
    Flag.PERMANENT,
    Flag.MANUAL,
    Flag.UNUSABLE,
    Flag.BOOTP,
    Flag.MANUAL | Flag.PERMANENT,
    Flag.UNUSABLE | Flag.MANUAL,
]
EXPIRIES = st.sampled_from([NEVER, 0, NOW - 500, NOW - 1, NOW, NOW + 1, NOW + 600])

records_ = st.dictionaries(
    st.sampled_from(ADDRESSES),
    st.tuples(st.sampled_from(["", *CLIENTS]), st.sampled_from(FLAGS), st.sampled_from([A, B]), EXPIRIES),
    max_size=len(ADDRESSES),
)
holds_ = st.lists(st.tuples(st.sampled_from(ADDRESSES), st.sampled_from(CLIENTS), EXPIRIES), max_size=4)
stripes = st.sampled_from([(0, 1), (0, 2), (1, 2), (2, 3)])


@settings(max_examples=500, deadline=None)
@given(
    records_,
    holds_,
    stripes,
    st.integers(0, 12),
    st.sampled_from([{}, {B: A}]),
    st.one_of(st.none(), st.sampled_from(ADDRESSES)),
)
def test_never_a_live_lease_never_outside_the_ranges(records, holds, stripe, cursor, adopted, requested):
    table = Table(
        Record(NET, at, client, flags, owner, expiry, signature=1)
        for at, (client, flags, owner, expiry) in records.items()
    )
    keep = Holds()
    for at, client, expiry in holds:
        keep.keep(Record(NET, at, client, Flag.DYNAMIC, A, expiry), NOW)
    lender = Lender(acting_for((A,), adopted), stripe)
    try:
        choice = choose(POOL, table, keep, lender, cursor, NOW, CLIENT, requested)
    except PoolExhausted:
        # Exhausted only when no address of ours could be lent to anyone.
        assert not any(lendable(POOL, table.records, keep, lender, at, NOW) for at in ADDRESSES)
        return
    got = choice.record
    if choice.reason in KEPT:
        assert got.client_id == CLIENT and (got.manual or got.active(NOW) or choice.reason == HOLD)
        return
    at = got.ip
    assert POOL.lendable(at), f"{at} is outside the ranges or reserved"
    # Our range; or, for its previous address, a record of ours.
    assert lender.owns_address(POOL, at) or (choice.reason == PREVIOUS and lender.owns(got))
    rec = table.records.get(at)
    assert rec is None or not rec.active(NOW), f"{at} is {rec.client_id}'s live lease"
    assert rec is None or not rec.manual, f"{at} is bound to {rec.client_id}"
    assert rec is None or not rec.unusable or (rec.expiry != NEVER and rec.expiry <= NOW), f"{at} is out of service"
    assert not keep.for_other(NET, at, NOW, CLIENT), f"{at} is held for another client"
    # A record a new address search finds free is taken whoever wrote it; one with a past is ours.
    assert rec is None or choice.reason == FRESH or lender.owns(rec), f"{at} is the peer's record"
    assert got == (rec or Record(NET, at))
