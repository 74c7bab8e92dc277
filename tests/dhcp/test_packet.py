"""The codec: table tests of the input rules, round trips, the output size rules, and a property:
decode never raises anything but MalformedPacket, whatever the bytes."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootsrv.dhcp import packet as P
from bootsrv.dhcp.packet import MalformedPacket, Packet, decode, encode, looks_like_discover


def raw_request(
    options: bytes = b"\x35\x01\x01",
    *,
    magic: bytes = P.MAGIC,
    sname: bytes = b"",
    file: bytes = b"",
    hlen: int = 6,
    op: int = 1,
    end: bytes = b"\xff",
) -> bytes:
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op,
        1,
        hlen,
        0,
        0xABCD,
        3,
        0x8000,
        bytes(4),
        bytes(4),
        bytes(4),
        bytes([10, 0, 0, 1]),
        bytes.fromhex("525400aabbcc").ljust(16, b"\0"),
        sname,
        file,
    )
    return head + magic + options + end


def test_decode_reads_the_header_and_options():
    pkt = decode(raw_request(b"\x35\x01\x01\x0c\x04host\x00\x00\x37\x03\x01\x03\x06"))
    assert (pkt.op, pkt.xid, pkt.secs, pkt.broadcast) == (1, 0xABCD, 3, True)
    assert pkt.giaddr == IPv4Address("10.0.0.1") and pkt.mac == bytes.fromhex("525400aabbcc")
    assert pkt.message_type == P.DISCOVER and pkt.text(12) == "host"
    assert list(pkt.options) == [53, 12, 55]


def test_split_options_are_concatenated_rfc3396():
    pkt = decode(raw_request(b"\x35\x01\x01\x2b\x02ab\x0c\x01x\x2b\x03cde"))
    assert pkt.options[43] == b"abcde"


def test_overload_reads_file_then_sname():
    file = b"\x2b\x02fi\xff"
    sname = b"\x2b\x02sn\x0c\x02ho\xff"
    pkt = decode(raw_request(b"\x35\x01\x03\x34\x01\x03\x2b\x02op", sname=sname, file=file))
    assert pkt.options[43] == b"opfisn"  # options field, then file, then sname (RFC 2131 4.1)
    assert pkt.options[12] == b"ho"
    assert pkt.file == b"" and pkt.sname == b""


def test_without_overload_file_and_sname_are_names():
    pkt = decode(raw_request(file=b"pxelinux.0"))
    assert pkt.file.rstrip(b"\0") == b"pxelinux.0"


def test_plain_bootp_has_no_options():
    pkt = decode(raw_request(magic=b"\0\0\0\0", options=b"", end=b""))
    assert not pkt.dhcp and pkt.options == {} and pkt.message_type is None


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x01" * 100, "100 bytes, shorter than the 236-byte BOOTP header"),
        (raw_request(op=3), "op is 3"),
        (raw_request(hlen=17), "hlen is 17"),
        (raw_request(b"\x35\x01\x01", end=b""), "options field ends without the end option"),
        (raw_request(b"\x35\x01\x01\x0c", end=b""), "option 12 in options has no length byte"),
        (raw_request(b"\x35\x01\x01\x0c\x09ab", end=b""), "option 12 in options claims 9 bytes, 2 left"),
        (raw_request(b"\x35\x02\x01\x01"), "option 53 has length 2, expected 1"),
        (raw_request(b"\x35\x01\x63"), "option 53 (message type) is 99"),
        (raw_request(b"\x35\x01\x03\x32\x03\x0a\x00\x00"), "option 50 has length 3, expected 4"),
        (raw_request(b"\x35\x01\x01\x61\x05\x00abcd"), "option 97 has length 5, expected 17"),
        (raw_request(b"\x35\x01\x01\x61\x11\x01" + bytes(16)), "option 97 (client GUID) has type 1"),
        (raw_request(b"\x35\x01\x01\x5d\x03\x00\x00\x07"), "option 93 has length 3, expected 2..any in steps of 2"),
        (raw_request(b"\x35\x01\x01\x39\x02\x01\x00"), "option 57 (maximum message size) is 256"),
        (raw_request(b"\x35\x01\x01\x34\x01\x04"), "option 52 (overload) is 04"),
        (raw_request(b"\x35\x01\x01\x34\x01\x01", file=b"\x34\x01\x01\xff"), "option 52 (overload) inside file"),
        (raw_request(b"\x35\x01\x01\x34\x01\x01", file=b"\x0c\xf0ab"), "option 12 in file claims 240 bytes"),
        (raw_request(b"\x35\x01\x01\x3d\x01\x01"), "option 61 has length 1, expected 2..any"),
    ],
    ids=[
        "short",
        "op",
        "hlen",
        "no-end",
        "no-length",
        "overrun",
        "type-len",
        "type-value",
        "requested-len",
        "guid-len",
        "guid-type",
        "arch-odd",
        "maxsize-small",
        "overload-value",
        "overload-nested",
        "overload-overrun",
        "client-id-short",
    ],
)
def test_malformed_packets_name_the_rule(raw, message):
    with pytest.raises(MalformedPacket, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(raw)


def offer(**options: bytes) -> Packet:
    req = decode(raw_request())
    out = P.reply_to(req, P.OFFER)
    out.yiaddr = IPv4Address("10.0.0.50")
    out.options.update({int(k[1:]): v for k, v in options.items()})
    return out


def test_encode_round_trips_and_pads_to_300():
    pkt = offer(o54=bytes([10, 0, 0, 1]), o51=struct.pack("!I", 600), o15=b"lab.example")
    raw = encode(pkt)
    assert len(raw) == 300 and raw[:1] == b"\x02"
    back = decode(raw)
    assert back.options == pkt.options and back.yiaddr == pkt.yiaddr and back.xid == pkt.xid
    assert back.giaddr == IPv4Address("10.0.0.1") and back.broadcast


def test_long_options_are_split_and_rejoined():
    value = bytes(range(256)) * 2  # 512 bytes: three parts of one option 43
    raw = encode(offer(o43=value), max_size=1500)
    assert raw.count(b"\x2b\xff") >= 2
    assert decode(raw).options[43] == value


def test_maximum_message_size_spills_into_file_and_sname_then_drops():
    big = {f"o{c}": bytes([c]) * 120 for c in (224, 225, 226, 227, 228, 229)}  # 6 x 122 bytes
    pkt = offer(o54=bytes(4), **big)
    raw = encode(pkt, max_size=576 - 28)
    assert len(raw) <= 548
    back = decode(raw)
    assert back.options[53] == b"\x02" and back.options[54] == bytes(4)
    assert 52 in back.options  # overload used
    kept = [c for c in range(224, 230) if c in back.options]
    assert kept == [224, 225, 226]  # 2 in the options field (307 bytes), 1 in file (127), none in sname (63)
    for c in kept:
        assert back.options[c] == bytes([c]) * 120
    wide = decode(encode(pkt, max_size=1500))
    assert all(c in wide.options for c in range(224, 230)) and 52 not in wide.options


def test_no_overload_when_file_is_used():
    pkt = offer(**{f"o{c}": bytes([c]) * 200 for c in (224, 225, 226)})
    pkt.file = b"undionly.kpxe"
    back = decode(encode(pkt, max_size=548))
    assert 52 not in back.options and back.file.rstrip(b"\0") == b"undionly.kpxe"
    assert 224 in back.options and 226 not in back.options


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=700))
def test_decode_raises_only_malformed_on_any_bytes(data):
    try:
        decode(data)
    except MalformedPacket:
        pass


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=0, max_size=400), st.integers(0, 400), st.integers(0, 255))
def test_decode_raises_only_malformed_on_mutated_requests(tail, pos, byte):
    base = bytearray(
        raw_request(
            b"\x35\x01\x03\x34\x01\x03\x32\x04\x0a\x00\x00\x05",
            file=b"\x0c\x02ab\xff",
            sname=b"\x3d\x07\x01" + bytes(6) + b"\xff",
        )
        + tail
    )
    if pos < len(base):
        base[pos] = byte
    try:
        pkt = decode(bytes(base))
    except MalformedPacket:
        return
    # Whatever decoded re-encodes and decodes to the same options.
    again = decode(encode(pkt, max_size=65000)) if pkt.dhcp else None
    if again is not None and len(pkt.sname) == 64 and len(pkt.file) == 128:
        assert again.options.keys() >= {k for k in pkt.options if k not in (0, 52, 255)}


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 300), st.integers(0, 255), st.booleans())
def test_a_glance_that_says_discover_is_never_another_message(tail, pos, byte, second_53):
    # looks_like_discover lets load shedding drop a datagram undecoded: whatever it takes for a
    # DISCOVER must decode as one or not at all (MalformedPacket), never as a REQUEST.
    extra = b"\x35\x01\x03" if second_53 else b""
    base = bytearray(raw_request(b"\x35\x01\x01" + extra + b"\x37\x02\x01\x03") + tail)
    if pos < len(base):
        base[pos] = byte
    raw = bytes(base)
    if not looks_like_discover(raw):
        return
    try:
        pkt = decode(raw)
    except MalformedPacket:
        return
    assert pkt.message_type == P.DISCOVER


def test_the_glance_wants_option_53_first():
    assert looks_like_discover(raw_request(b"\x35\x01\x01"))
    assert not looks_like_discover(raw_request(b"\x35\x01\x03"))  # a REQUEST
    assert not looks_like_discover(raw_request(b"\x37\x01\x01\x35\x01\x01"))  # 53 second: decode finds it
    assert not looks_like_discover(raw_request(b"\x35\x01\x01")[:242])  # cut short
