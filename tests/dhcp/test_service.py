"""engine_handler as `bootsrv serve` builds it (file store in a temp directory, no sockets): a
relayed DORA through bytes in, Outgoing/Future out; load shedding of DISCOVERs that waited."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Network

from bootsrv.app.dhcp import SHED_BACKLOG, engine_handler
from bootsrv.app.wiring import Wiring
from bootsrv.config import parse
from bootsrv.dhcp import packet as P
from bootsrv.dhcp.packet import decode, encode
from bootsrv.dhcp.server import Arrival, Deferred, Outgoing

from .conftest import request

RELAY = "10.72.0.1"


def handler(tmp_path):
    cfg = parse(
        f"""
[server]
owner_ips = ["10.73.0.1"]
[store]
directory = "{tmp_path}"
[[networks]]
name = "far"
subnet = "10.72.0.0/24"
relays = ["{RELAY}"]
[[networks.ranges]]
start = "10.72.0.10"
end = "10.72.0.20"
""",
        "t",
    )
    return engine_handler(Wiring(cfg))


def test_relayed_dora_through_the_handler(tmp_path):
    handle = handler(tmp_path)
    arrival = Arrival(None, (RELAY, 67), time.monotonic(), time.time())
    out = handle(encode(request(P.DISCOVER, giaddr=RELAY)), arrival)
    assert isinstance(out, Outgoing) and (out.address, out.port) == (IPv4Address(RELAY), 67)
    offer = decode(out.payload)
    assert offer.message_type == P.OFFER and offer.options[54] == IPv4Address("10.73.0.1").packed
    req = request(P.REQUEST, giaddr=RELAY, o50=offer.yiaddr.packed, o54=offer.options[54])
    pending = handle(encode(req), arrival)
    assert isinstance(pending, Deferred)  # sent by the loop once the lease is fsync'ed
    ack = decode(pending.result().payload)
    assert ack.message_type == P.ACK and ack.yiaddr == offer.yiaddr
    assert f"{offer.yiaddr}|01525400000001|" in (tmp_path / "leases.far").read_text()


def test_discovers_are_shed_while_the_buffer_fills_and_requests_come_in(tmp_path):
    handle = handler(tmp_path)
    now = time.monotonic()
    fresh = Arrival(None, (RELAY, 67), now, SHED_BACKLOG / 2)
    stale = Arrival(None, (RELAY, 67), now, (1 + SHED_BACKLOG) / 2)
    # No REQUEST in flight: a DISCOVER is still answered (a stalled server answers late).
    first = handle(encode(request(P.DISCOVER, giaddr=RELAY)), stale)
    assert first is not None and handle.shed[0] == 0
    offer = decode(first.payload)
    req = request(P.REQUEST, giaddr=RELAY, o50=offer.yiaddr.packed, o54=offer.options[54])
    assert decode(handle(encode(req), stale).result().payload).message_type == P.ACK
    # A REQUEST just came in: DISCOVERs from a filling buffer give way, others do not.
    assert handle(encode(request(P.DISCOVER, b"\x52\0\0\0\0\x07", giaddr=RELAY)), stale) is None
    assert handle.shed[0] == 1
    assert handle(encode(request(P.DISCOVER, b"\x52\0\0\0\0\x08", giaddr=RELAY)), fresh) is not None
    unknown = Arrival(None, (RELAY, 67), now)  # not measured (after a short batch): never shed
    assert handle(encode(request(P.DISCOVER, b"\x52\0\0\0\0\x09", giaddr=RELAY)), unknown) is not None
    later = Arrival(None, (RELAY, 67), now + 5, (1 + SHED_BACKLOG) / 2)  # REQUESTs stopped
    assert handle(encode(request(P.DISCOVER, b"\x52\0\0\0\0\x0a", giaddr=RELAY)), later) is not None


def test_one_debug_line_per_reply_only_at_debug_level(tmp_path, caplog):
    import logging

    handle = handler(tmp_path)
    arrival = Arrival(None, (RELAY, 67), time.monotonic(), time.time())
    with caplog.at_level(logging.INFO, logger="bootsrv.dhcp"):
        handle(encode(request(P.DISCOVER, giaddr=RELAY)), arrival)
    assert not [r for r in caplog.records if r.getMessage() == "dhcp.reply"]
    with caplog.at_level(logging.DEBUG, logger="bootsrv.dhcp"):
        handle(encode(request(P.DISCOVER, giaddr=RELAY, xid=2)), arrival)
    lines = [r for r in caplog.records if r.getMessage() == "dhcp.reply"]
    assert len(lines) == 1
    fields = lines[0].bootsrv_fields
    assert (fields["type"], fields["mac"], fields["to"]) == ("OFFER", "52:54:00:00:00:01", f"{RELAY}:67")
    assert IPv4Address(fields["ip"]) in IPv4Network("10.72.0.0/24")


def test_a_shed_discover_is_not_decoded(tmp_path, monkeypatch):
    # Under a storm most datagrams are DISCOVERs to shed: they are recognised at fixed offsets,
    # the decode is kept for the ones answered.
    decoded = []
    real = P.decode
    monkeypatch.setattr(P, "decode", lambda raw: decoded.append(raw) or real(raw))
    handle = handler(tmp_path)
    behind = Arrival(None, (RELAY, 67), time.monotonic(), (1 + SHED_BACKLOG) / 2)
    offer = decode(handle(encode(request(P.DISCOVER, giaddr=RELAY)), behind).payload)
    req = encode(request(P.REQUEST, giaddr=RELAY, o50=offer.yiaddr.packed, o54=offer.options[54]))
    assert handle(req, behind) is not None
    decoded.clear()
    assert handle(encode(request(P.DISCOVER, b"\x52\0\0\0\0\x07", giaddr=RELAY)), behind) is None
    assert handle.shed[0] == 1 and decoded == []
    # Option 53 not first: the decode finds the DISCOVER and it is shed all the same.
    late_53 = request(P.DISCOVER, b"\x52\0\0\0\0\x08", giaddr=RELAY)
    late_53.options = {P.PARAMETER_LIST: b"\x01\x03", **late_53.options}
    assert handle(encode(late_53), behind) is None
    assert handle.shed[0] == 2 and len(decoded) == 1
