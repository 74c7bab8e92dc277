"""BOOTP/DHCP messages on the wire (RFC 951, RFC 2131 section 2, RFC 2132): decode and encode, pure.

Hand-written with `struct` because the codec is on the hot path of every exchange: scapy's
decode and encode cost more than a whole DORA's budget (`python -m bootsrv.dhcp.packet` compares
the two on a PXE ROM's DISCOVER and an OFFER; docs/dhcp.md "Measured" has the figures). scapy
stays where speed does not matter (tests, fuzzing, captures).

Input rules (each breach raises `MalformedPacket` naming the field or option and the rule):
- the fixed header is 236 bytes (RFC 2131 figure 1) and `hlen` fits chaddr (16 bytes);
- after the magic cookie 99.130.83.99 (RFC 2132 2) options are code/length/value, pad (0) and end
  (255) without a length; an option may not run past the end of its field and the options field
  must be closed by end;
- option overload (52, RFC 2132 9.3) continues the options into `file` then `sname` (RFC 2131 4.1
  gives this order); 52 only in the options field, value 1..3;
- an option that appears more than once is one option split in parts (RFC 3396): parts are
  concatenated in the order options field, file, sname;
- options whose size the RFCs fix are checked (53, 50, 54, 51, 57, 61, 93, 94, 97, 55, ...).
A packet without the magic cookie is plain BOOTP (RFC 951): header only, no options.

Output: options are written in the order given (the caller puts what matters first); an option
longer than 255 bytes is split into several of the same code (RFC 3396); the message never
exceeds the client's maximum message size (57, RFC 2132 9.10, which counts IP and UDP headers)
or 576 bytes without it (RFC 2131 2): options that do not fit the options field go to `file` and
`sname` through overload (52) when those fields are unused, and past that are left out (the
caller lists the ones it cannot do without first). Replies are padded to 300 bytes (the BOOTP
minimum, RFC 1542 2.1: some relays and old PXE ROMs drop shorter replies).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from bootsrv.errors import MalformedPacket

MAGIC = b"\x63\x82\x53\x63"
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_LEN = HEADER.size  # 236
BOOTREQUEST, BOOTREPLY = 1, 2
BROADCAST = 0x8000  # flags bit (RFC 2131 2: the leftmost bit)
PAD, END = 0, 255
MIN_REPLY = 300  # RFC 1542 2.1
MIN_MESSAGE = 576  # RFC 2131 2: every client accepts a message of this size (IP datagram)
IP_UDP_HEADERS = 28

# Message types (option 53, RFC 2132 9.6).
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}

# Option codes used by name elsewhere.
SUBNET_MASK, ROUTER, DNS_SERVERS, HOSTNAME, DOMAIN_NAME, MTU, BROADCAST_ADDRESS = 1, 3, 6, 12, 15, 26, 28
VENDOR_SPECIFIC, REQUESTED_IP, LEASE_TIME, OVERLOAD, MESSAGE_TYPE, SERVER_ID = 43, 50, 51, 52, 53, 54
PARAMETER_LIST, MESSAGE, MAX_SIZE, RENEWAL_TIME, REBINDING_TIME, VENDOR_CLASS, CLIENT_ID = 55, 56, 57, 58, 59, 60, 61
TFTP_SERVER, BOOTFILE, USER_CLASS, CLIENT_ARCH, CLIENT_NDI, CLIENT_GUID = 66, 67, 77, 93, 94, 97
RELAY_AGENT, IPXE_ENCAP = 82, 175

# (minimum length, maximum length, length must be a multiple of) for options we read or whose
# size the RFCs fix. Anything else is carried as opaque bytes.
_SIZES: dict[int, tuple[int, int, int]] = {
    SUBNET_MASK: (4, 4, 1),
    ROUTER: (4, 255 * 4, 4),
    DNS_SERVERS: (4, 255 * 4, 4),
    HOSTNAME: (1, 1 << 16, 1),
    REQUESTED_IP: (4, 4, 1),
    LEASE_TIME: (4, 4, 1),
    OVERLOAD: (1, 1, 1),
    MESSAGE_TYPE: (1, 1, 1),
    SERVER_ID: (4, 4, 1),
    PARAMETER_LIST: (1, 1 << 16, 1),
    MAX_SIZE: (2, 2, 1),
    RENEWAL_TIME: (4, 4, 1),
    REBINDING_TIME: (4, 4, 1),
    VENDOR_CLASS: (1, 1 << 16, 1),
    CLIENT_ID: (2, 1 << 16, 1),  # RFC 2132 9.14: type octet plus at least one octet
    CLIENT_ARCH: (2, 1 << 16, 2),  # RFC 4578 2.1: a list of 16-bit types
    CLIENT_NDI: (3, 3, 1),  # RFC 4578 2.2: type, major, minor
    CLIENT_GUID: (17, 17, 1),  # RFC 4578 2.3: type 0 + 16-octet GUID
}


@dataclass(slots=True)
class Packet:
    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = IPv4Address(0)
    yiaddr: IPv4Address = IPv4Address(0)
    siaddr: IPv4Address = IPv4Address(0)
    giaddr: IPv4Address = IPv4Address(0)
    chaddr: bytes = bytes(16)
    sname: bytes = b""
    file: bytes = b""
    # Code -> value, in the order first seen; split options already joined (RFC 3396).
    options: dict[int, bytes] = field(default_factory=dict)
    dhcp: bool = True  # False: plain BOOTP, no magic cookie (RFC 951)

    # ---- what the engine reads ---------------------------------------------------------------
    @property
    def mac(self) -> bytes:
        return self.chaddr[: self.hlen]

    @property
    def message_type(self) -> int | None:
        value = self.options.get(MESSAGE_TYPE)
        return value[0] if value else None

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST)

    def address(self, code: int) -> IPv4Address | None:
        value = self.options.get(code)
        return IPv4Address(value) if value is not None else None

    def text(self, code: int) -> str | None:
        value = self.options.get(code)
        return value.decode("ascii", "replace").rstrip("\0") if value is not None else None

    def max_size(self) -> int:
        """The largest DHCP message (UDP payload) the client takes (RFC 2132 9.10)."""
        value = self.options.get(MAX_SIZE)
        size = struct.unpack("!H", value)[0] if value else MIN_MESSAGE
        return max(size, MIN_MESSAGE) - IP_UDP_HEADERS


_ZERO = IPv4Address(0)


_ADDRESSES: dict[bytes, IPv4Address] = {}


def _addr(octets: bytes) -> IPv4Address:
    # Most addresses in a request are 0.0.0.0, and the rest (relays, renewing clients) repeat:
    # a shared object instead of a parse (~2.7 us) each. Bounded: cleared when it grows large.
    if octets == b"\0\0\0\0":
        return _ZERO
    ip = _ADDRESSES.get(octets)
    if ip is None:
        if len(_ADDRESSES) > 65536:
            _ADDRESSES.clear()
        ip = _ADDRESSES[octets] = IPv4Address(octets)
    return ip


def looks_like_discover(raw: bytes) -> bool:
    """A BOOTREQUEST with the magic cookie whose first option is message type DISCOVER, read at
    fixed offsets without decoding. RFC 2131 fixes no option order, but every client captured
    here puts 53 first (dhclient, udhcpc, iPXE, OVMF: tests/dhcp/golden; perfdhcp too). For
    shedding under load (bootsrv.app.dhcp): a shed DISCOVER then costs a few byte reads
    instead of a decode. When it is True, `decode` gives a DISCOVER or raises (a second 53 would
    be joined to this one, RFC 3396, and fail the length check): never another message type."""
    first = HEADER_LEN + 4  # the first option, after the cookie
    return (
        len(raw) > first + 2
        and raw[0] == BOOTREQUEST
        and raw[HEADER_LEN:first] == MAGIC
        and raw[first] == MESSAGE_TYPE
        and raw[first + 1] == 1
        and raw[first + 2] == DISCOVER
    )


def decode(raw: bytes) -> Packet:
    if len(raw) < HEADER_LEN:
        raise MalformedPacket(f"{len(raw)} bytes, shorter than the {HEADER_LEN}-byte BOOTP header")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file) = HEADER.unpack_from(
        raw
    )
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"op is {op}, expected 1 (BOOTREQUEST) or 2 (BOOTREPLY)")
    if hlen > 16:
        raise MalformedPacket(f"hlen is {hlen}, more than the 16 bytes of chaddr")
    packet = Packet(
        op,
        htype,
        hlen,
        hops,
        xid,
        secs,
        flags,
        _addr(ciaddr),
        _addr(yiaddr),
        _addr(siaddr),
        _addr(giaddr),
        chaddr,
        sname,
        file,
        {},
        False,
    )
    if len(raw) < HEADER_LEN + 4 or raw[HEADER_LEN : HEADER_LEN + 4] != MAGIC:
        return packet  # BOOTP (RFC 951): the vendor area is not RFC 1048 options
    packet.dhcp = True
    options = packet.options
    _read_options(raw, HEADER_LEN + 4, len(raw), "options", options, must_end=True)
    value = options.get(OVERLOAD)
    if value is not None:
        if len(value) != 1 or not 1 <= value[0] <= 3:
            raise MalformedPacket(f"option 52 (overload) is {value.hex() or 'empty'}, expected one octet 1, 2 or 3")
        # RFC 2131 4.1: options field first, then file, then sname.
        if value[0] & 1:
            _read_options(raw, 108, 236, "file", options, must_end=False)
            packet.file = b""
        if value[0] & 2:
            _read_options(raw, 44, 108, "sname", options, must_end=False)
            packet.sname = b""
    _check_sizes(options)
    return packet


def _read_options(raw: bytes, pos: int, stop: int, where: str, options: dict[int, bytes], must_end: bool) -> None:
    """Options from raw[pos:stop] into `options`; a code seen again is appended to what it had
    (RFC 3396: a long option comes as several of the same code, concatenated in order)."""
    while pos < stop:
        code = raw[pos]
        if code == PAD:
            pos += 1
            continue
        if code == END:
            return
        if pos + 1 >= stop:
            raise MalformedPacket(f"option {code} in {where} has no length byte")
        length = raw[pos + 1]
        end = pos + 2 + length
        if end > stop:
            raise MalformedPacket(f"option {code} in {where} claims {length} bytes, {stop - pos - 2} left")
        if code == OVERLOAD and where != "options":
            raise MalformedPacket(f"option 52 (overload) inside {where} (RFC 2132 9.3: only in the options field)")
        seen = options.get(code)
        options[code] = raw[pos + 2 : end] if seen is None else seen + raw[pos + 2 : end]
        pos = end
    if must_end:
        raise MalformedPacket(f"{where} field ends without the end option (255)")
    # file and sname are fixed-size fields: an overloaded one may be full up to its last byte.


def _check_sizes(options: dict[int, bytes]) -> None:
    for code, value in options.items():
        rule = _SIZES.get(code)
        if rule is None:
            continue
        low, high, unit = rule
        n = len(value)
        if n < low or n > high or n % unit:
            want = str(low) if low == high else f"{low}..{high if high < 1 << 16 else 'any'}"
            if unit > 1:
                want += f" in steps of {unit}"
            raise MalformedPacket(f"option {code} has length {n}, expected {want}")
    mtype = options.get(MESSAGE_TYPE)
    if mtype is not None and not 1 <= mtype[0] <= 18:  # RFC 2132 9.6, RFC 4388 and RFC 6926
        raise MalformedPacket(f"option 53 (message type) is {mtype[0]}, not a DHCP message type")
    size = options.get(MAX_SIZE)
    if size is not None and struct.unpack("!H", size)[0] < MIN_MESSAGE:
        raise MalformedPacket(
            f"option 57 (maximum message size) is {struct.unpack('!H', size)[0]}, "
            f"below the minimum {MIN_MESSAGE} (RFC 2132 9.10)"
        )
    guid = options.get(CLIENT_GUID)
    if guid is not None and guid[0] != 0:
        raise MalformedPacket(f"option 97 (client GUID) has type {guid[0]}, expected 0 (RFC 4578 2.3)")


# ---------------------------------------------------------------------------------------------
# Encoding


def _option_bytes(code: int, value: bytes) -> bytes:
    if len(value) <= 255:
        return bytes((code, len(value))) + value
    # RFC 3396: a long option is several options of the same code, concatenated by the reader.
    return b"".join(bytes((code, len(value[i : i + 255]))) + value[i : i + 255] for i in range(0, len(value), 255))


_NOT_OPTIONS = frozenset((PAD, END, OVERLOAD))  # never taken from Packet.options as they are


def encode(packet: Packet, max_size: int = MIN_MESSAGE - IP_UDP_HEADERS) -> bytes:
    """The packet as bytes, no longer than `max_size` (a UDP payload; see the module doc)."""
    sname, file = packet.sname, packet.file
    if len(sname) > 64 or len(file) > 128:
        raise ValueError(f"sname is {len(sname)} bytes (max 64) or file is {len(file)} bytes (max 128)")
    head = HEADER.pack(
        packet.op,
        packet.htype,
        packet.hlen,
        packet.hops,
        packet.xid,
        packet.secs,
        packet.flags,
        packet.ciaddr.packed,
        packet.yiaddr.packed,
        packet.siaddr.packed,
        packet.giaddr.packed,
        packet.chaddr.ljust(16, b"\0")[:16],
        sname,
        file,
    )
    if not packet.dhcp:
        return head + bytes(MIN_REPLY - HEADER_LEN)
    room = max(max_size, MIN_MESSAGE - IP_UDP_HEADERS) - HEADER_LEN - 4 - 1  # cookie, end option
    # Nearly every reply: short options that all fit. Built in one pass, then checked.
    body = b"".join(
        [
            bytes((code, len(value))) + value if len(value) <= 255 else _option_bytes(code, value)
            for code, value in packet.options.items()
            if code not in _NOT_OPTIONS
        ]
    )
    if len(body) <= room:
        out = head + MAGIC + body + b"\xff"
        return out if len(out) >= MIN_REPLY else out + bytes(MIN_REPLY - len(out))
    main: list[bytes] = []
    spill: list[bytes] = []
    used = 0
    # Room for option 52 itself is kept back only when some option has to spill.
    can_spill = not sname and not file
    for code, value in packet.options.items():
        if code in _NOT_OPTIONS:
            continue
        chunk = _option_bytes(code, value)
        if used + len(chunk) <= room - (3 if spill else 0):
            main.append(chunk)
            used += len(chunk)
        elif can_spill:
            spill.append(chunk)
        # else: left out (does not fit the client's maximum; see the module doc)
    body = b"".join(main)
    if spill:
        if used + 3 > room:  # make room for option 52 by moving the last main option out
            last = main.pop()
            spill.insert(0, last)
            body = b"".join(main)
        file_area, sname_area = _fill(spill, 128 - 1), None
        rest = spill[len(file_area) :]
        sname_area = _fill(rest, 64 - 1) if rest else []
        overload = 1 | (2 if sname_area else 0)
        file_bytes = (b"".join(file_area) + b"\xff").ljust(128, b"\0")
        sname_bytes = (b"".join(sname_area) + b"\xff").ljust(64, b"\0") if sname_area else bytes(64)
        head = head[:44] + sname_bytes + file_bytes
        body += bytes((OVERLOAD, 1, overload))
    out = head + MAGIC + body + b"\xff"
    if len(out) < MIN_REPLY:
        out += bytes(MIN_REPLY - len(out))
    return out


def _fill(chunks: list[bytes], room: int) -> list[bytes]:
    """The leading chunks that fit in `room` bytes (order kept: the caller's priority)."""
    out, used = [], 0
    for chunk in chunks:
        if used + len(chunk) > room:
            break
        out.append(chunk)
        used += len(chunk)
    return out


def reply_to(request: Packet, message_type: int) -> Packet:
    """A BOOTREPLY skeleton for `request` (RFC 2131 table 3: xid, flags, giaddr, chaddr copied)."""
    return Packet(
        BOOTREPLY,
        request.htype,
        request.hlen,
        0,
        request.xid,
        0,
        request.flags,
        _ZERO,
        _ZERO,
        _ZERO,
        request.giaddr,
        request.chaddr,
        b"",
        b"",
        {MESSAGE_TYPE: bytes((message_type,))},
    )


def _bench(n: int = 20000) -> None:  # pragma: no cover - measurement for the module doc
    import timeit

    request = Packet(
        chaddr=bytes.fromhex("525400123456"),
        xid=0x1234,
        flags=BROADCAST,
        options={
            MESSAGE_TYPE: b"\x01",
            PARAMETER_LIST: bytes([1, 3, 6, 43, 60, 66, 67, 97, 128, 129, 130]),
            MAX_SIZE: b"\x04\xec",
            CLIENT_ARCH: b"\x00\x00",
            CLIENT_NDI: b"\x01\x02\x01",
            CLIENT_GUID: b"\x00" + bytes(range(16)),
            VENDOR_CLASS: b"PXEClient:Arch:00000:UNDI:002001",
        },
    )
    raw = encode(request)
    offer = reply_to(request, OFFER)
    offer.yiaddr = IPv4Address("10.0.0.50")
    offer.file = b"undionly.kpxe"
    offer.options.update(
        {
            SERVER_ID: bytes(4),
            LEASE_TIME: bytes(4),
            RENEWAL_TIME: bytes(4),
            REBINDING_TIME: bytes(4),
            SUBNET_MASK: bytes(4),
            ROUTER: bytes(4),
            DNS_SERVERS: bytes(8),
            DOMAIN_NAME: b"lab.example",
            VENDOR_CLASS: b"PXEClient",
            VENDOR_SPECIFIC: b"\x06\x01\x08\xff",
            CLIENT_GUID: request.options[97],
        }
    )
    ours_d = timeit.timeit(lambda: decode(raw), number=n) / n * 1e6
    ours_e = timeit.timeit(lambda: encode(offer), number=n) / n * 1e6
    print(f"decode {ours_d:.1f} us   encode {ours_e:.1f} us   ({len(raw)} / {len(encode(offer))} bytes)")
    try:
        from scapy.layers.dhcp import BOOTP
    except ImportError:
        return
    m = max(n // 50, 200)
    s_d = timeit.timeit(lambda: BOOTP(raw), number=m) / m * 1e6
    pkt = BOOTP(encode(offer))
    s_e = timeit.timeit(lambda: bytes(pkt.copy()), number=m) / m * 1e6
    print(f"scapy: decode {s_d:.0f} us   encode {s_e:.0f} us   (ratio {s_d / ours_d:.0f}x / {s_e / ours_e:.0f}x)")


if __name__ == "__main__":  # pragma: no cover
    _bench()
