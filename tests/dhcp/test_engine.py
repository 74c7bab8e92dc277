"""The engine, table by table: every message type and client state, the pair's ownership rules,
network selection and reply routing (RFC 2131 4.1). MemoryStore, a fixed clock, real packets."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from bootsrv.dhcp import packet as P

from .conftest import MAC, NOW, RELAY, S1, S2, World, config, ip4, request, u32


def dora(world: World, mac: bytes = MAC, server=S1, **kw) -> IPv4Address:
    offer = world.ask(request(P.DISCOVER, mac, **kw), server)
    assert offer is not None and offer.message_type == P.OFFER
    ack = world.ask(request(P.REQUEST, mac, o50=offer.packet.yiaddr.packed, o54=server.packed, **kw), server)
    assert ack is not None and ack.message_type == P.ACK and ack.packet.yiaddr == offer.packet.yiaddr
    return ack.packet.yiaddr


# ---- DISCOVER / OFFER ------------------------------------------------------------------------


def test_offer_carries_lease_network_options_and_holds_the_address(world):
    reply = world.ask(request(P.DISCOVER, o55=bytes([1, 3, 6, 15, 26, 28, 42, 12])))
    pkt = reply.packet
    assert pkt.op == P.BOOTREPLY and pkt.xid == 0x1000 and pkt.mac == MAC
    assert IPv4Address("10.70.0.50") <= pkt.yiaddr <= IPv4Address("10.70.0.99")  # S1's own range only
    o = pkt.options
    assert list(o)[:5] == [53, 54, 51, 58, 59]
    assert o[54] == S1.packed and u32(o[51]) == 600 and u32(o[58]) == 300 and u32(o[59]) == 525
    assert list(o)[5:] == [1, 3, 6, 15, 26, 28, 42]  # the client's order (RFC 2132 9.8); 12 unknown
    assert o[1] == ip4("255.255.255.0") and o[3] == ip4("10.70.0.1") and o[6] == ip4("10.70.0.1") + ip4("10.70.0.3")
    assert (
        o[15] == b"lab.example" and o[26] == b"\x23\x28" and o[28] == ip4("10.70.0.255") and o[42] == ip4("10.70.0.5")
    )
    rec = world.record("public", pkt.yiaddr)
    assert rec.client_id == "01" + MAC.hex().upper() and rec.expiry == NOW + 30  # offer_hold
    # The same client asking again is offered the same address; another client another one.
    assert world.ask(request(P.DISCOVER)).packet.yiaddr == pkt.yiaddr
    assert world.ask(request(P.DISCOVER, bytes.fromhex("525400000002"))).packet.yiaddr != pkt.yiaddr


def test_offer_honours_a_requested_free_address_of_ours(world):
    assert world.ask(request(P.DISCOVER, o50=ip4("10.70.0.77"))).packet.yiaddr == IPv4Address("10.70.0.77")
    # Not lendable by us (the peer's range, outside any range, another subnet): allocated instead.
    for other in ("10.70.0.160", "10.70.0.20", "192.168.1.5"):
        got = world.ask(request(P.DISCOVER, bytes.fromhex("5254000000aa"), o50=ip4(other))).packet.yiaddr
        assert got != IPv4Address(other)


def test_client_identifier_option_is_the_key(world):
    a = dora(world, MAC, o61=b"\x00myclient")
    # Another NIC with the same client id is the same client (RFC 2132 9.14).
    offer = world.ask(request(P.DISCOVER, bytes.fromhex("525400009999"), o61=b"\x00myclient"))
    assert offer.packet.yiaddr == a
    assert world.record("public", a).client_id == b"\x00myclient".hex().upper()


def test_without_a_parameter_list_every_layer_option_is_sent(world):
    o = world.ask(request(P.DISCOVER)).packet.options
    assert {1, 3, 6, 15, 26, 28, 42} <= set(o)


def test_pool_exhausted_is_silence():
    world = World(config(**{'end = "10.70.0.99"': 'end = "10.70.0.51"'}))
    dora(world, bytes.fromhex("525400000001"))
    dora(world, bytes.fromhex("525400000002"))
    assert world.ask(request(P.DISCOVER, bytes.fromhex("525400000003"))) is None


# ---- REQUEST ------------------------------------------------------------------------------------


def test_selecting_acks_durably_and_records_the_lease(world):
    ip = dora(world)
    rec = world.record("public", ip)
    assert rec.expiry == NOW + 600 and rec.owner == S1


def test_selecting_another_server_is_silence(world):
    offer = world.ask(request(P.DISCOVER))
    # The client took the peer's offer: we neither ACK nor NAK (RFC 2131 4.3.2).
    assert world.ask(request(P.REQUEST, o50=offer.packet.yiaddr.packed, o54=S2.packed)) is None
    assert world.ask(request(P.REQUEST, o54=S1.packed)) is None  # no requested address: broken client


def test_selecting_an_address_held_by_another_client_naks(world):
    taken = dora(world, bytes.fromhex("525400000002"))
    nak = world.ask(request(P.REQUEST, o50=taken.packed, o54=S1.packed))
    assert nak.message_type == P.NAK and nak.to.address == IPv4Address("255.255.255.255")
    assert b"held by" in nak.packet.options[56] and nak.packet.yiaddr == IPv4Address(0)


INIT_REBOOT_CASES = [
    ("own-lease", "own", None, P.ACK),
    ("wrong-subnet", "10.99.0.5", None, P.NAK),
    ("lease-elsewhere", "10.70.0.60", None, P.NAK),
    ("held-by-other", "other", None, P.NAK),
    ("free-and-ours", "10.70.0.70", "fresh", P.ACK),
    ("free-peer-range", "10.70.0.170", "fresh", None),
    ("foreign-lease", "foreign", None, None),
]


@pytest.mark.parametrize("case, address, who, expected", INIT_REBOOT_CASES, ids=[c[0] for c in INIT_REBOOT_CASES])
def test_init_reboot(world, case, address, who, expected):
    mac = MAC if who is None else bytes.fromhex("5254000000ff")
    own = dora(world)
    other = dora(world, bytes.fromhex("525400000002"))
    foreign = dora(world, bytes.fromhex("525400000003"), server=S2)
    target = {"own": own, "other": other, "foreign": foreign}.get(address) or IPv4Address(address)
    if case == "foreign-lease":
        mac = bytes.fromhex("525400000003")
    reply = world.ask(request(P.REQUEST, mac, o50=target.packed))
    assert (reply.message_type if reply else None) == expected
    if expected == P.ACK:
        assert reply.packet.yiaddr == target and world.record("public", target).client_id.endswith(mac.hex().upper())


RENEW_CASES = [
    # (id, lease owner, secs, expected)
    ("own", S1, 0, P.ACK),
    ("foreign-early", S2, 5, None),
    ("foreign-after-timeout", S2, 20, P.ACK),
]


@pytest.mark.parametrize("case, owner, secs, expected", RENEW_CASES, ids=[c[0] for c in RENEW_CASES])
def test_renewing_and_rebinding(world, case, owner, secs, expected):
    ip = dora(world, server=owner)
    world.now += 400
    reply = world.ask(request(P.REQUEST, ciaddr=str(ip), secs=secs))
    assert (reply.message_type if reply else None) == expected
    if expected == P.ACK:
        assert reply.to.address == ip and reply.to.port == 68 and reply.to.hwaddr is None  # unicast to ciaddr
        rec = world.record("public", ip)
        assert rec.expiry == world.now + 600 and rec.owner == owner  # renewed, ownership unchanged


def test_renewing_an_address_someone_else_holds_naks(world):
    dora(world)
    other = dora(world, bytes.fromhex("525400000002"))
    reply = world.ask(request(P.REQUEST, ciaddr=str(other)))
    assert reply.message_type == P.NAK


def test_foreign_offer_only_after_the_secondary_timeout(world):
    ip = dora(world, server=S2)
    assert world.ask(request(P.DISCOVER, secs=3)) is None  # the owner, S2, answers
    late = world.ask(request(P.DISCOVER, secs=25))
    assert late.packet.yiaddr == ip  # the client's lease, never a second address


# ---- DECLINE / RELEASE / INFORM -------------------------------------------------------------------


def test_decline_marks_unusable_and_is_not_answered(world):
    ip = dora(world)
    assert world.ask(request(P.DECLINE, o50=ip.packed, o54=S1.packed)) is None
    rec = world.record("public", ip)
    assert rec.unusable and rec.client_id == "" and rec.expiry == NOW + 600
    assert world.ask(request(P.DISCOVER)).packet.yiaddr != ip


def test_decline_for_the_peer_is_ignored(world):
    ip = dora(world)
    world.ask(request(P.DECLINE, o50=ip.packed, o54=S2.packed))
    assert not world.record("public", ip).unusable


def test_release_frees_the_address(world):
    ip = dora(world)
    assert world.ask(request(P.RELEASE, ciaddr=str(ip), o54=S1.packed)) is None
    assert world.record("public", ip).client_id == ""
    # Manual bindings survive a release.
    world.stores[S1].bind("public", "10.70.0.90", "01" + "525400000005", "host5")
    world.ask(request(P.RELEASE, bytes.fromhex("525400000005"), ciaddr="10.70.0.90", o54=S1.packed))
    assert world.record("public", "10.70.0.90").manual


def test_inform_gives_options_without_a_lease(world):
    reply = world.ask(request(P.INFORM, ciaddr="10.70.0.200", o55=bytes([1, 3, 51, 6])))
    o = reply.packet.options
    assert reply.message_type == P.ACK and reply.packet.yiaddr == IPv4Address(0)
    assert 51 not in o and 58 not in o and o[3] == ip4("10.70.0.1")
    assert reply.to.address == IPv4Address("10.70.0.200") and reply.to.port == 68
    assert world.record("public", "10.70.0.200") is None


def test_manual_binding_is_offered_with_an_infinite_lease(world):
    world.stores[S1].bind("public", "10.70.0.95", "01" + MAC.hex(), "node1")
    offer = world.ask(request(P.DISCOVER))
    assert offer.packet.yiaddr == IPv4Address("10.70.0.95") and u32(offer.packet.options[51]) == 0xFFFFFFFF
    ack = world.ask(request(P.REQUEST, o50=ip4("10.70.0.95"), o54=S1.packed))
    assert ack.message_type == P.ACK and world.record("public", "10.70.0.95").permanent
    assert u32(ack.packet.options[51]) == 0xFFFFFFFF and 58 not in ack.packet.options
    renew = world.ask(request(P.REQUEST, ciaddr="10.70.0.95"))
    assert u32(renew.packet.options[51]) == 0xFFFFFFFF


def test_bootp_and_replies_are_not_answered(world):
    bootp = request(P.DISCOVER)
    bootp.dhcp, bootp.options = False, {}
    assert world.ask(bootp) is None
    reply = request(P.OFFER)
    reply.op = P.BOOTREPLY
    assert world.ask(reply) is None


# ---- networks and routing ----------------------------------------------------------------------

ROUTES = [
    # (id, interface, giaddr, ciaddr, flags, expected network, destination, port, hwaddr?)
    ("broadcast-bit", "net0", "0.0.0.0", "0.0.0.0", 0x8000, "public", "255.255.255.255", 68, False),
    ("unicast-to-chaddr", "net0", "0.0.0.0", "0.0.0.0", 0, "public", "yiaddr", 68, True),
    ("relayed", None, str(RELAY), "0.0.0.0", 0, "backend", str(RELAY), 67, False),
    ("relayed-on-an-interface", "net0", str(RELAY), "0.0.0.0", 0x8000, "backend", str(RELAY), 67, False),
    ("unknown-relay", None, "10.99.0.1", "0.0.0.0", 0, None, None, None, None),
    ("unconfigured-interface", "net7", "0.0.0.0", "0.0.0.0", 0x8000, None, None, None, None),
    ("relay-socket-without-giaddr", None, "0.0.0.0", "0.0.0.0", 0x8000, None, None, None, None),
]


@pytest.mark.parametrize(
    "case, iface, giaddr, ciaddr, flags, network, dest, port, hw", ROUTES, ids=[r[0] for r in ROUTES]
)
def test_network_selection_and_routing(world, case, iface, giaddr, ciaddr, flags, network, dest, port, hw):
    reply = world.ask(request(P.DISCOVER, giaddr=giaddr, flags=flags), interface=iface)
    if network is None:
        assert reply is None
        return
    subnet = "10.70.0." if network == "public" else "10.71.0."
    assert str(reply.packet.yiaddr).startswith(subnet)
    assert reply.packet.giaddr == IPv4Address(giaddr)
    want = reply.packet.yiaddr if dest == "yiaddr" else IPv4Address(dest)
    assert (reply.to.address, reply.to.port, reply.to.hwaddr is not None) == (want, port, hw)
    if network == "backend":
        assert reply.packet.options[54] == S1.packed  # relayed network: our owner address
        assert u32(reply.packet.options[51]) == 1200


def test_relayed_client_renews_by_unicast_without_giaddr(world):
    offer = world.ask(request(P.DISCOVER, giaddr=str(RELAY)), interface=None)
    ip = offer.packet.yiaddr
    world.ask(request(P.REQUEST, giaddr=str(RELAY), o50=ip.packed, o54=S1.packed), interface=None)
    renew = world.ask(request(P.REQUEST, ciaddr=str(ip)), interface=None)
    assert renew.message_type == P.ACK and renew.to.address == ip and renew.to.port == 68


def test_relayed_nak_sets_the_broadcast_bit(world):
    reply = world.ask(request(P.REQUEST, giaddr=str(RELAY), o50=ip4("10.70.0.60")), interface=None)
    assert reply.message_type == P.NAK and reply.packet.broadcast and reply.to.address == RELAY


def test_ten_clients_get_ten_addresses(world):
    ips = {dora(world, bytes([0x52, 0, 0, 0, 1, i])) for i in range(10)}
    assert len(ips) == 10


def test_the_pair_never_gives_one_address_twice():
    world = World()
    got = []
    for i in range(40):
        server = S1 if i % 2 else S2
        got.append(dora(world, bytes([0x52, 0, 0, 0, 2, i]), server=server))
    assert len(set(got)) == 40
    for ip in got:
        rec = world.record("public", ip)
        in_s1 = IPv4Address("10.70.0.50") <= ip <= IPv4Address("10.70.0.99")
        assert rec.owner == (S1 if in_s1 else S2)


def test_a_released_client_gets_its_previous_address_back(world):
    ip = dora(world)
    dora(world, bytes.fromhex("525400000002"))
    world.ask(request(P.RELEASE, ciaddr=str(ip), o54=S1.packed))
    assert world.ask(request(P.DISCOVER)).packet.yiaddr == ip  # RFC 2131 4.3.1
    # Unless someone else took it meanwhile.
    world.ask(request(P.RELEASE, ciaddr=str(ip), o54=S1.packed))
    world.stores[S1].bind("public", ip, "01" + "5254000000AB", "other")
    assert world.ask(request(P.DISCOVER)).packet.yiaddr != ip


def test_icmp_check_skips_addresses_that_answer():
    from .conftest import config

    cfg = config(**{"offer_hold = 30\n": "offer_hold = 30\nicmp_check = true\n"})
    world = World(cfg)
    busy = {IPv4Address("10.70.0.50"), IPv4Address("10.70.0.51")}
    probed = []

    def probe(ip):
        probed.append(ip)
        return ip in busy

    world.engines[S1].probe = probe
    offer = world.ask(request(P.DISCOVER))
    assert offer.packet.yiaddr == IPv4Address("10.70.0.52")
    assert probed == [IPv4Address("10.70.0.50"), IPv4Address("10.70.0.51"), IPv4Address("10.70.0.52")]
    assert world.record("public", "10.70.0.50").unusable and world.record("public", "10.70.0.51").unusable
    # The client's own held address is not probed again.
    world.ask(request(P.DISCOVER))
    assert len(probed) == 3
    # Off by default.
    assert World().engines[S1].probe is None
