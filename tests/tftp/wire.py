"""A minimal TFTP client for tests: raw packets over a real UDP socket, so a test can send what no
well-behaved client would (hostile requests) and see exactly what the server answers."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field


def request(opcode: int, filename: bytes | str, mode: bytes = b"octet", options: dict | None = None) -> bytes:
    name = filename.encode() if isinstance(filename, str) else filename
    out = struct.pack("!H", opcode) + name + b"\0" + mode + b"\0"
    for key, value in (options or {}).items():
        out += key.encode() + b"\0" + str(value).encode() + b"\0"
    return out


def parse_oack(packet: bytes) -> dict[str, str]:
    fields = packet[2:].split(b"\0")[:-1]
    return {fields[i].decode(): fields[i + 1].decode() for i in range(0, len(fields), 2)}


@dataclass
class Result:
    error: tuple[int, str] | None = None
    oack: dict[str, str] | None = None
    data: bytearray = field(default_factory=bytearray)
    blocks: int = 0
    sizes: list[int] = field(default_factory=list)


def fetch(
    port: int,
    packet: bytes,
    host: str = "127.0.0.1",
    timeout: float = 3.0,
    window: int = 1,
    abort_after_oack: int | None = None,
) -> Result:
    """Send `packet` (an RRQ or anything else), then play a correct client for whatever comes back."""
    res = Result()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (host, port))
        expected, tid, blksize = 1, None, 512
        while True:
            reply, peer = sock.recvfrom(70000)
            if tid is None:
                tid = peer
            assert peer == tid, f"reply from {peer}, transfer is with {tid}"
            opcode = struct.unpack("!H", reply[:2])[0]
            if opcode == 5:
                code = struct.unpack("!H", reply[2:4])[0]
                res.error = (code, reply[4:].rstrip(b"\0").decode("utf-8", "replace"))
                return res
            if opcode == 6:
                res.oack = parse_oack(reply)
                if abort_after_oack is not None:
                    sock.sendto(struct.pack("!HH", 5, abort_after_oack) + b"no thanks\0", tid)
                    return res
                blksize = int(res.oack.get("blksize", 512))
                window = int(res.oack.get("windowsize", 1))
                sock.sendto(struct.pack("!HH", 4, 0), tid)
                continue
            assert opcode == 3, f"unexpected opcode {opcode}"
            block = struct.unpack("!H", reply[2:4])[0]
            if block != expected & 0xFFFF:
                continue  # duplicate or out of order: a real client would re-ACK; not needed here
            payload = reply[4:]
            res.data += payload
            res.blocks += 1
            res.sizes.append(len(payload))
            last = len(payload) < blksize
            if last or expected % window == 0:
                sock.sendto(struct.pack("!HH", 4, block), tid)
            expected += 1
            if last:
                return res
