"""Property: whatever decodes, the engine answers or stays silent; it never raises (a request the
codec accepts is the engine's to judge, with the store and the registry behind it). And whatever
it reports as seen, discovery records or refuses in one batch: it never raises either."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootsrv.dhcp import packet as P
from bootsrv.dhcp.packet import MalformedPacket, decode, encode
from bootsrv.machines.discovery import record
from bootsrv.machines.model import MemoryRegistry, RegistryNetboot

from .conftest import RELAY, S1, World

OPTION_VALUES = st.one_of(
    st.binary(max_size=20),
    st.sampled_from(
        [
            b"PXEClient:Arch:00000:UNDI:002001",
            b"HTTPClient:Arch:00016",
            b"iPXE",
            b"\x04iPXE",
            b"\x00\x07",
            b"\x00\x10",
            b"\x00" * 17,
            bytes([10, 70, 0, 60]),
            bytes([10, 70, 0, 160]),
            S1.packed,
            RELAY.packed,
        ]
    ),
)
OPTIONS = st.dictionaries(
    st.sampled_from([50, 51, 54, 55, 57, 60, 61, 77, 93, 94, 97, 12, 82, 43]), OPTION_VALUES, max_size=6
)


@st.composite
def requests(draw):
    mtype = draw(st.integers(1, 8))
    opts = {53: bytes((mtype,)), **draw(OPTIONS)}
    body = b"".join(bytes((c, len(v))) + v for c, v in opts.items())
    addr = st.sampled_from(
        [b"\0\0\0\0", bytes([10, 70, 0, 60]), bytes([10, 71, 0, 55]), RELAY.packed, bytes([192, 168, 1, 1])]
    )
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        draw(st.integers(0, 3)),
        draw(st.integers(0, 16)),
        0,
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 65535)),
        draw(st.sampled_from([0, 0x8000])),
        draw(addr),
        b"\0" * 4,
        b"\0" * 4,
        draw(addr),
        draw(st.binary(min_size=16, max_size=16)),
        b"",
        b"",
    )
    return (
        head + P.MAGIC + body + b"\xff",
        draw(st.sampled_from(["net0", None, "net9"])),
        draw(st.sampled_from([S1, None])),
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(requests(), min_size=1, max_size=6))
def test_engine_never_raises(batch):
    registry = MemoryRegistry()
    world = World(machines=RegistryNetboot(registry))
    seen = []
    for raw, interface, server in batch:
        try:
            req = decode(raw)
        except MalformedPacket:
            continue
        reply = world.engines[server or S1].decide(req, interface, world.now)
        if reply is not None:
            assert reply.packet.op == P.BOOTREPLY and reply.packet.xid == req.xid
            assert decode(encode(reply.packet, reply.max_size)).message_type in (P.OFFER, P.ACK, P.NAK)
            if reply.durable is not None:
                reply.settled(reply.durable.result())
            if reply.sighting is not None:
                seen.append(reply.sighting)
        world.now += 7
    recorded = record(registry, seen, limit=2, auto_profile=None)
    assert len(registry.list()) <= 2 and len(recorded.refused) <= len(seen)
