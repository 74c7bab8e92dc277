"""One contract for every lease store implementation (memory and file): what DHCP, DNS, the
machine registry and guest provisioning rely on."""

from __future__ import annotations

from ipaddress import IPv4Address as IP

import pytest

from bootsrv.errors import Conflict, InvalidInput, NotFound
from bootsrv.leases import NEVER, AddressTaken, Collision, Flag, PoolExhausted, client_id_of_mac
from tests.leases.conftest import A, B

NOW = 1_700_000_000
C1 = client_id_of_mac("52:54:00:00:00:01")
C2 = client_id_of_mac("52:54:00:00:00:02")


def test_offer_takes_first_free_owned_address_and_holds_it(stores):
    store = stores()
    rec = store.offer("public", C1, NOW, hold=30)
    assert rec.ip == IP("10.0.0.10") and rec.owner == A and rec.client_id == C1
    assert rec.expiry == NOW + 30
    assert store.offer("public", C1, NOW + 1, hold=30) == rec  # same client: same offer, no rewrite
    assert store.offer("public", C2, NOW, hold=30).ip == IP("10.0.0.11")


def test_offer_hold_lapses_and_an_ack_ends_it(stores):
    store = stores()
    first = store.offer("public", C1, NOW, hold=30)
    c3 = client_id_of_mac("52:54:00:00:00:03")
    with pytest.raises(AddressTaken):  # held for C1: nobody else may take it meanwhile
        store.ack("public", first.ip, C2, NOW + 1, 3600)
    assert store.offer("public", C2, NOW + 31, hold=30, requested=first.ip).ip == first.ip  # C1 never asked: lapsed
    lease = store.ack("public", first.ip, C2, NOW + 32, 3600)
    assert lease.client_id == C2 and store.offer("public", c3, NOW + 33, 30).ip != first.ip


def test_offer_honours_requested_address_only_when_free_and_ours(stores):
    store = stores()
    assert store.offer("public", C1, NOW, 30, requested=IP("10.0.0.15")).ip == IP("10.0.0.15")
    # taken by C1, and 10.0.0.25 belongs to server B: both fall back to allocation
    assert store.offer("public", C2, NOW, 30, requested=IP("10.0.0.15")).ip == IP("10.0.0.10")
    assert store.offer("public", client_id_of_mac("52:54:00:00:00:03"), NOW, 30, requested=IP("10.0.0.25")).ip == IP(
        "10.0.0.11"
    )


def test_pair_allocates_from_disjoint_ranges(stores):
    a, b = stores((A,)), stores((B,))
    got_a = {a.offer("public", client_id_of_mac(f"52:54:00:00:01:{i:02x}"), NOW, 30).ip for i in range(10)}
    got_b = {b.offer("public", client_id_of_mac(f"52:54:00:00:02:{i:02x}"), NOW, 30).ip for i in range(10)}
    assert got_a == {IP(f"10.0.0.{i}") for i in range(10, 20)}
    assert got_b == {IP(f"10.0.0.{i}") for i in range(20, 30)}
    with pytest.raises(PoolExhausted):
        a.offer("public", client_id_of_mac("52:54:00:00:03:00"), NOW, 30)


def test_handle_sees_peer_lease_as_foreign(stores):
    a, b = stores((A,)), stores((B,))
    lease = b.ack("public", b.offer("public", C1, NOW, 30).ip, C1, NOW, 3600)
    a.rescan()
    seen = a.find("public", C1, NOW)
    assert seen is not None and seen.ip == lease.ip and not a.owns(seen) and b.owns(seen)
    # a DISCOVER at A returns the client's live lease unchanged: A decides whether to answer
    assert a.offer("public", C1, NOW, 30) == seen


def test_ack_commits_and_renew_extends(stores):
    store = stores()
    offer = store.offer("public", C1, NOW, 30)
    lease = store.ack("public", offer.ip, C1, NOW, 3600, hostname="node1")
    assert lease.expiry == NOW + 3600 and lease.hostname == "node1" and lease.signature != offer.signature
    renewed = store.ack("public", offer.ip, C1, NOW + 1800, 3600)
    assert renewed.expiry == NOW + 5400 and renewed.hostname == "node1"


def test_ack_refuses_address_held_by_another_client(stores):
    store = stores()
    ip = store.ack("public", store.offer("public", C1, NOW, 30).ip, C1, NOW, 3600).ip
    with pytest.raises(AddressTaken):
        store.ack("public", ip, C2, NOW, 3600)
    with pytest.raises(AddressTaken):  # not in any range: nothing to lend
        store.ack("public", IP("10.0.0.100"), C2, NOW, 3600)


def test_ack_without_offer_takes_free_owned_address(stores):
    """INIT-REBOOT after a server restart: the address is free and ours, so it is given."""
    store = stores()
    assert store.ack("public", IP("10.0.0.17"), C1, NOW, 60).client_id == C1


def test_expired_lease_is_reused_only_after_fresh_addresses_run_out(stores):
    store = stores()
    first = store.ack("public", store.offer("public", C1, NOW, 30).ip, C1, NOW, 10)
    for i in range(9):
        c = client_id_of_mac(f"52:54:00:00:04:{i:02x}")
        store.ack("public", store.offer("public", c, NOW, 30).ip, c, NOW, 3600)
    late = client_id_of_mac("52:54:00:00:05:00")
    with pytest.raises(PoolExhausted):
        store.offer("public", late, NOW + 5, 30)
    assert store.offer("public", late, NOW + 11, 30).ip == first.ip


def test_client_gets_its_previous_address_back(stores):
    store = stores()
    ip = store.ack("public", store.offer("public", C1, NOW, 30, requested=IP("10.0.0.13")).ip, C1, NOW, 10).ip
    assert store.offer("public", C1, NOW + 100, 30).ip == ip


def test_release_frees_dynamic_and_keeps_manual(stores):
    store = stores()
    ip = store.ack("public", store.offer("public", C1, NOW, 30).ip, C1, NOW, 3600).ip
    assert store.release("public", ip, C2) is None  # not the holder: nothing changes
    freed = store.release("public", ip, C1)
    assert freed is not None and not freed.client_id and store.find("public", C1, NOW) is None
    bound = store.bind("public", "10.0.0.50", C2, "vm-host1")
    assert store.release("public", bound.ip, C2) is None and store.get("public", bound.ip) == bound


def test_decline_marks_unusable_and_allocation_skips_it(stores):
    store = stores()
    ip = store.offer("public", C1, NOW, 30).ip
    marked = store.decline("public", ip, C1, NOW, hold=600)
    assert marked.unusable and not marked.client_id
    assert store.offer("public", C2, NOW, 30).ip != ip
    with pytest.raises(AddressTaken):
        store.ack("public", ip, C2, NOW, 60)


def test_bind_is_manual_permanent_and_named(stores):
    store = stores()
    rec = store.bind("public", "10.0.0.50", "52:54:00:aa:bb:cc", "vm-host1", comment="appl-1:vm-1")
    assert rec.flags == Flag.MANUAL | Flag.PERMANENT and rec.expiry == NEVER
    assert rec.client_id == "01525400AABBCC" and rec.hostname == "vm-host1"
    cid = rec.client_id
    assert store.offer("public", cid, NOW, 30) == rec  # DHCP offers the binding
    assert store.ack("public", rec.ip, cid, NOW, 3600).expiry == NEVER
    assert [r.hostname for r in store.records() if r.hostname] == ["vm-host1"]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(ip="10.0.1.5"), InvalidInput),  # outside the subnet
        (dict(ip="10.0.0.0"), InvalidInput),  # network address
        (dict(ip="not-an-ip"), InvalidInput),
        (dict(ip="10.0.0.254"), Conflict),  # reserved (router)
        (dict(client_id="zz"), InvalidInput),
        (dict(hostname="bad_name"), InvalidInput),
        (dict(network="nowhere"), InvalidInput),
    ],
)
def test_bind_refuses_bad_input_and_writes_nothing(stores, kwargs, error):
    store = stores()
    args = dict(network="public", ip="10.0.0.50", client_id="52:54:00:aa:bb:cc", hostname="vm-host1") | kwargs
    with pytest.raises(error):
        store.bind(**args)
    assert store.records() == []


def test_bind_refuses_taken_address_and_taken_hostname(stores):
    store = stores()
    ip = store.ack("public", store.offer("public", C1, NOW, 30).ip, C1, NOW, 3600).ip
    with pytest.raises(AddressTaken):
        store.bind("public", ip, C2, "x", now=NOW)
    store.bind("public", "10.0.0.50", C2, "vm-host1")
    with pytest.raises(Conflict, match="hostname"):
        store.bind("backend", "10.1.0.50", C1, "vm-host1")


def test_modify_and_delete_with_signature_guard(stores):
    store = stores()
    rec = store.bind("public", "10.0.0.50", C1, "vm-host1")
    with pytest.raises(Collision):
        store.modify("public", rec.ip, expect=rec.signature + 2, comment="stale")
    changed = store.modify("public", rec.ip, expect=rec.signature, comment="fresh")
    assert changed.comment == "fresh" and changed.signature != rec.signature
    with pytest.raises(Collision):
        store.delete("public", rec.ip, expect=rec.signature)
    store.delete("public", rec.ip)
    with pytest.raises(NotFound):
        store.delete("public", rec.ip)


def test_stale_writer_collides_across_handles(stores):
    a, a2 = stores((A,)), stores((A,))
    rec = a.bind("public", "10.0.0.50", C1, "vm-host1")
    a2.rescan()
    a.modify("public", rec.ip, comment="first")
    with pytest.raises(Collision):
        a2.modify("public", rec.ip, expect=rec.signature, comment="second")


def test_adopt_moves_peer_ranges_and_records(stores):
    a, b = stores((A,)), stores((B,))
    lease = b.ack("public", b.offer("public", C1, NOW, 30).ip, C1, NOW, 3600)
    assert a.adopt(B) == 1
    mine = a.get("public", lease.ip)
    assert mine.owner == A and mine.client_id == C1 and mine.expiry == lease.expiry
    got = {a.offer("public", client_id_of_mac(f"52:54:00:00:06:{i:02x}"), NOW, 30).ip for i in range(19)}
    assert len(got) == 19 and IP("10.0.0.29") in got  # B's range is A's now
    with pytest.raises(InvalidInput):
        a.adopt(A)


def test_expire_frees_lapsed_leases(stores):
    store = stores()
    store.ack("public", store.offer("public", C1, NOW, 30).ip, C1, NOW, 10)
    store.bind("public", "10.0.0.50", C2, "vm-host1")
    assert store.expire("public", NOW + 11) == 1
    assert store.find("public", C1, NOW + 11) is None and store.find("public", C2, NOW) is not None


def test_pending_ack_resolves_to_the_durable_record(stores):
    store = stores()
    pending = store.ack_pending("public", store.offer("public", C1, NOW, 30).ip, C1, NOW, 3600)
    rec = pending.result()
    assert rec.client_id == C1 and store.get("public", rec.ip) == rec
