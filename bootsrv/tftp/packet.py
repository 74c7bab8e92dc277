"""The TFTP packets bootsrv reads and writes, as values: opcodes, the request, OACK, ERROR, netascii.

Pure: bytes in, values out, and back. tftpy decodes requests (TftpPacketFactory) and encodes
OACK and ERROR; the packets of a running transfer (DATA out, ACK and ERROR in) are packed and
unpacked with HEADER by the transfer itself (bootsrv.tftp.transfer), which must not allocate per
packet: tftpy would parse every ACK into an object, and its ERROR decoder logs at error level,
so every UEFI tsize probe would read as a failure.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketERR, TftpPacketOACK, TftpPacketRRQ, TftpPacketWRQ
from tftpy.TftpShared import TftpException

from bootsrv.tftp import paths
from bootsrv.tftp.paths import Refusal

# RFC 1350 section 5 (1-5) and RFC 2347 (6).
OP_RRQ, OP_WRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 2, 3, 4, 5, 6

# The first four bytes of DATA, ACK and ERROR (RFC 1350 section 5): the opcode, then the block
# number (DATA, ACK) or the error code (ERROR).
HEADER = struct.Struct("!HH")


@dataclass
class Request:
    """A decoded RRQ/WRQ: opcode, file name and mode as sent, options (RFC 2347) name -> value."""

    opcode: int
    filename: str
    mode: str
    options: dict[str, str]


def decode_request(packet: bytes) -> Request | Refusal:
    """The request a packet on the request port carries, or why it is refused (ERROR 4)."""
    try:
        pkt = TftpPacketFactory().parse(packet)
    except (TftpException, UnicodeDecodeError, ValueError, struct.error) as exc:
        return Refusal(paths.ILLEGAL_OPERATION, f"malformed request: {exc}")
    if isinstance(pkt, TftpPacketWRQ):
        return Request(OP_WRQ, pkt.filename, pkt.mode, dict(pkt.options))
    if not isinstance(pkt, TftpPacketRRQ):
        return Refusal(paths.ILLEGAL_OPERATION, f"opcode {pkt.opcode} is not a request")
    return Request(OP_RRQ, pkt.filename, pkt.mode, dict(pkt.options))


class ErrorPacket(TftpPacketERR):
    """tftpy's ERROR packet with our message: its encoder only knows the eight stock texts."""

    def __init__(self, code: int, message: str):
        super().__init__()
        self.errorcode, self.errmsg = code, message

    def encode(self) -> ErrorPacket:
        text = self.errmsg.encode("utf-8", "replace")[:200]
        self.buffer = struct.pack(f"!HH{len(text)}sx", self.opcode, self.errorcode, text)
        return self


def error_packet(code: int, message: str) -> bytes:
    """ERROR (RFC 1350 section 5): a code of bootsrv.tftp.paths and a message for the client's log."""
    return ErrorPacket(code, message).encode().buffer


def oack_packet(options: dict[str, str]) -> bytes:
    """OACK (RFC 2347): the options as negotiated, in the client's order and spelling."""
    pkt = TftpPacketOACK()
    pkt.options = options
    return pkt.encode().buffer


def netascii(data: bytes) -> bytes:
    """RFC 1350 / RFC 764 netascii: CR -> CR NUL, LF -> CR LF (CR first, or LF's CR would double)."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")
