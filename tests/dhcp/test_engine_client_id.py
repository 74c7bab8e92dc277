"""A client id the lease store's record rules refuse (bootsrv.leases.rules) gets no answer: the
engine drops the request before the store, so the store never holds it and the socket loop
never sees an exception (RFC 2132 9.14: option 61's length is one octet)."""

from __future__ import annotations

import pytest

from bootsrv.dhcp import packet as P

from .conftest import MAC, World, request

CASES = [
    # (id, option 61 or None, htype, chaddr, answered)
    ("ethernet-without-option-61", None, 1, MAC, True),
    ("option-61-of-255-octets", b"\x01" + bytes(254), 1, MAC, True),
    ("option-61-of-256-octets", b"\x01" + bytes(255), 1, MAC, False),  # RFC 3396 concatenation
    ("option-61-of-1000-octets", b"\xff" * 1000, 1, MAC, False),
    ("htype-0-and-no-chaddr-make-00", None, 0, b"", False),  # '00' is the files' 'nobody'
]


@pytest.mark.parametrize("option61, htype, chaddr, answered", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_client_ids_the_store_refuses_get_no_answer(option61, htype, chaddr, answered):
    world = World()
    extra = {"o61": option61} if option61 is not None else {}
    discover = request(P.DISCOVER, chaddr, **extra)
    discover.htype = htype
    offer = world.ask(discover)
    assert (offer is not None) == answered
    if answered:
        ask = request(P.REQUEST, chaddr, o50=offer.packet.yiaddr.packed, o54=offer.packet.options[P.SERVER_ID], **extra)
        ask.htype = htype
        assert world.ask(ask).message_type == P.ACK
    assert len(world.stores[next(iter(world.stores))].records()) == (1 if answered else 0)
