"""Bad input: 100,000 mutated and truncated DHCP packets at a running `bootsrv serve` leave it
running, and a real client (udhcpc) is served afterwards.

Seeds are real-shaped requests (DISCOVER/REQUEST/INFORM/RELEASE/DECLINE, PXE and iPXE options,
relayed and not); mutations flip and set bytes, truncate, extend, corrupt option lengths, repeat
options and add option overload (52). A fixed seed makes a failure reproducible.
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_dhcp_clients import start_server, udhcpc_once  # noqa: E402
from test_dhcp_lab import in_netns  # noqa: E402

# These need the engine behind `bootsrv serve`'s DHCP service; until it is in the tree they skip
# with this reason (the socket loop itself is tested in test_dhcp_lab.py).
pytest.importorskip("bootsrv.dhcp.engine", reason="the DHCP engine (bootsrv/dhcp/engine.py) is not in this tree yet")

pytestmark = pytest.mark.integration

COUNT = 100_000
MAGIC = b"\x63\x82\x53\x63"


def bootp(
    op=1,
    xid=1,
    secs=0,
    flags=0x8000,
    ciaddr=b"\0" * 4,
    giaddr=b"\0" * 4,
    mac=b"\x02\0\0\0\0\1",
    options: list[tuple[int, bytes]] = (),
) -> bytes:
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op,
        1,
        6,
        0,
        xid,
        secs,
        flags,
        ciaddr,
        b"\0" * 4,
        b"\0" * 4,
        giaddr,
        mac.ljust(16, b"\0"),
        b"",
        b"",
    )
    body = b"".join(bytes([code, len(value)]) + value for code, value in options)
    return head + MAGIC + body + b"\xff"


def seeds() -> list[bytes]:
    pxe = [
        (60, b"PXEClient:Arch:00007:UNDI:003016"),
        (93, b"\x00\x07"),
        (94, b"\x01\x03\x10"),
        (97, b"\x00" + bytes(range(16))),
        (55, bytes([1, 3, 6, 43, 60, 66, 67, 97, 128])),
    ]
    out = [
        bootp(
            options=[(53, b"\x01"), (61, b"\x01\x02\0\0\0\0\1"), (55, bytes([1, 3, 6, 15, 51, 54])), (57, b"\x05\xc0")]
        ),
        bootp(options=[(53, b"\x01")] + pxe),
        bootp(options=[(53, b"\x01"), (77, b"iPXE"), (60, b"PXEClient:Arch:00000:UNDI:002001"), (93, b"\x00\x00")]),
        bootp(options=[(53, b"\x03"), (50, bytes([10, 65, 0, 50])), (54, bytes([10, 65, 0, 1])), (12, b"vm-host1")]),
        bootp(flags=0, ciaddr=bytes([10, 65, 0, 50]), options=[(53, b"\x03")]),
        bootp(options=[(53, b"\x03"), (50, bytes([10, 65, 0, 50]))]),  # INIT-REBOOT
        bootp(ciaddr=bytes([10, 65, 0, 50]), options=[(53, b"\x08")]),  # INFORM
        bootp(ciaddr=bytes([10, 65, 0, 50]), options=[(53, b"\x07"), (54, bytes([10, 65, 0, 1]))]),  # RELEASE
        bootp(options=[(53, b"\x04"), (50, bytes([10, 65, 0, 51])), (54, bytes([10, 65, 0, 1]))]),  # DECLINE
        bootp(giaddr=bytes([10, 65, 0, 254]), options=[(53, b"\x01"), (82, b"\x01\x04ge-1")]),
        bootp(options=[(53, b"\x01"), (52, b"\x03")]),  # overload: options in file and sname
        bootp(op=2, options=[(53, b"\x02")]),  # a BOOTREPLY: never answered
        bootp(options=[]),  # plain BOOTP
    ]
    return out


def mutate(rng: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    kind = rng.randrange(9)
    if kind == 0:  # truncate anywhere, header included
        return bytes(data[: rng.randrange(len(data))])
    if kind == 1:  # flip a few bits
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 2:  # random bytes in the options area
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(236, len(data))] = rng.randrange(256)
    elif kind == 3 and len(data) > 242:  # an option claiming more bytes than there are
        pos = rng.randrange(240, len(data) - 1)
        data[pos + 1] = rng.choice([0, 1, 255, rng.randrange(256)])
    elif kind == 4:  # garbage appended, end option removed
        data = data.rstrip(b"\xff") + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    elif kind == 5:  # header fields: hlen, htype, op, hops
        data[rng.choice([0, 1, 2, 3])] = rng.randrange(256)
    elif kind == 6:  # repeated or conflicting message types
        data = data[:-1] + bytes([53, 1, rng.randrange(256), 53, 1, rng.randrange(256), 255])
    elif kind == 7:  # option overload pointing at garbage file/sname
        data[44:236] = bytes(rng.randrange(256) for _ in range(192))
        data = data[:-1] + bytes([52, 1, rng.randrange(4), 255])
    else:  # pure noise of a plausible size
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))
    return bytes(data)


def _rcvbuf_errors(host) -> int:
    out = host.run(["nstat", "-az", "UdpRcvbufErrors"]).stdout
    return int(out.split("UdpRcvbufErrors")[1].split()[0])


def test_mutated_packets_leave_the_server_serving(lab, tmp_path):
    # Mutated DISCOVERs are clients too (a mutated chaddr is a new one), each holding an address
    # for offer_hold: a 150-address range ran out under the flood now and then, and the real
    # client got no address (DHCP starvation, not a crash). A /16 range is far larger than the flood.
    server, client, _proc, fuzzer = start_server(
        lab, tmp_path, subnet="10.65.0.0/16", start="10.65.1.0", end="10.65.250.255"
    )

    rng = random.Random(20261124)
    pool = seeds()

    def flood():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"net0")
        sock.bind(("0.0.0.0", 68))
        started = time.monotonic()
        sent = 0
        for i in range(COUNT):
            packet = mutate(rng, rng.choice(pool))
            try:
                sock.sendto(packet, ("255.255.255.255", 67) if i % 2 else ("10.65.0.1", 67))
                sent += 1
            except OSError:
                pass
            if i % 500 == 499:
                time.sleep(0.1)  # ~5,000/s: paced so the server parses them instead of the kernel dropping them
        sock.close()
        return sent, time.monotonic() - started

    before = _rcvbuf_errors(server)
    sent, took = in_netns(fuzzer.ns, flood)
    assert sent >= COUNT * 0.99, f"only {sent} sent"
    assert took < 60
    # Most packets reached the server's parser instead of overflowing its socket buffer.
    dropped = _rcvbuf_errors(server) - before
    assert dropped < COUNT * 0.1, f"{dropped} of {sent} packets dropped by the kernel, not parsed"
    assert _proc.poll() is None, "bootsrv serve died under bad input"
    lease = udhcpc_once(client, tmp_path, "net0")
    assert lease is not None and lease.startswith("10.65."), "no lease for a real client after the flood"
    assert _proc.poll() is None
