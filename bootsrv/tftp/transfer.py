"""One read transfer (RRQ): its state machine from the OACK or DATA 1 to the last ACK, and its log line.

A Transfer owns what RFC 1350 gives one transfer: the server's TID (a connected UDP socket on a
fresh port) and the file (a descriptor, or the bytes of a dynamic file). It uses the options
negotiated for it (bootsrv.tftp.options): blksize (RFC 2348), timeout (RFC 2349) and the window
of RFC 7440; it answers the client's ACKs and ERRORs (on_packet) and its silence (on_timeout),
retransmits, and ends with one log line. It does its own I/O, on purpose: DATA goes out with one
send() of a memoryview per packet from a buffer filled by one preadv per chunk, each block with
its 4-byte header already in front, so the hot path allocates nothing per packet. What drives
transfers (epoll, the clock) is bootsrv.tftp.loop.
"""

from __future__ import annotations

import logging
import os
import socket

from bootsrv.log import event
from bootsrv.tftp.options import Negotiated
from bootsrv.tftp.packet import HEADER, OP_ACK, OP_DATA, OP_ERROR, oack_packet

log = logging.getLogger("bootsrv.tftp")

MAX_RETRIES = 5  # retransmissions of one window before giving up (tftpd-hpa: 6 s at 1 s)


class Transfer:
    """One read transfer: a window of DATA blocks to one client over one connected socket.

    Block numbers here are absolute (1, 2, ... beyond 65535); the wire carries them mod 2**16
    (rollover to 0, as tftp-hpa, atftp and iPXE expect for files over 32 MiB at blksize 512).
    """

    # Slots: attribute access is most of the Python time per packet.
    __slots__ = (
        "sock",
        "client",
        "filename",
        "fd",
        "data",
        "size",
        "opts",
        "blksize",
        "window",
        "timeout",
        "started",
        "acked",
        "next",
        "last",
        "waiting_oack",
        "sent_at",
        "retries",
        "resent",
        "outcome",
        "n",
        "buf",
        "iov",
        "packets",
        "lengths",
        "chunk_first",
        "chunk_count",
        "oack",
        "stride",
    )

    def __init__(
        self,
        sock: socket.socket,
        client: tuple[str, int],
        filename: str,
        fd: int | None,
        data: bytes | None,
        size: int,
        opts: Negotiated,
        now: float,
    ):
        self.sock, self.client, self.filename = sock, client, filename
        self.fd, self.data, self.size, self.opts = fd, (memoryview(data) if data is not None else None), size, opts
        self.blksize, self.window, self.timeout = opts.blksize, opts.windowsize, opts.timeout
        self.started = now
        self.acked = 0  # highest block the client acknowledged
        self.next = 1  # next block to send
        self.last: int | None = None  # the final block (shorter than blksize), once read
        self.waiting_oack = bool(opts.oack)
        self.sent_at = now
        self.retries = 0
        self.resent = 0
        self.outcome = ""
        self.stride = self.blksize + 4
        self.n = max(self.window, min(1024, -(-65536 // self.blksize)))
        self.chunk_first = 0  # absolute block number of packets[0]; 0 = nothing read yet
        self.chunk_count = 0
        self.oack = oack_packet(opts.oack) if opts.oack else b""

    def _allocate(self) -> None:
        # Chunk: n blocks, each with its 4-byte header in front, refilled by one preadv. Made at
        # start(), so a transfer handed to a pump costs the server no buffer.
        stride = self.stride
        self.buf = bytearray(self.n * stride)
        mv = memoryview(self.buf)
        self.iov = [mv[i * stride + 4 : (i + 1) * stride] for i in range(self.n)]
        self.packets = [mv[i * stride : (i + 1) * stride] for i in range(self.n)]
        self.lengths = [0] * self.n

    def _fill(self, first: int) -> None:
        offset = (first - 1) * self.blksize
        if self.fd is not None:
            got = os.preadv(self.fd, self.iov, offset)
        else:
            # Without a descriptor the file is its bytes: every caller passes one or the other
            # (a file opened, or a dynamic/netascii file's bytes), and close() drops the
            # descriptor only when the transfer has ended, after its last _fill.
            data = self.data
            assert data is not None
            got = max(0, min(len(data) - offset, self.n * self.blksize))
            pos = offset
            for view in self.iov:
                take = min(self.blksize, offset + got - pos)
                if take <= 0:
                    break
                view[:take] = data[pos : pos + take]
                pos += take
        full, rest = divmod(got, self.blksize)
        self.chunk_first = first
        if full == self.n:
            self.chunk_count = self.n
            self.lengths = [self.blksize] * self.n
        else:
            # The block after the last full one is the final block (possibly empty, RFC 1350).
            self.chunk_count = full + 1
            self.lengths = [self.blksize] * full + [rest]
            self.last = first + full

    def send_window(self, now: float) -> None:
        """Send what the window allows: blocks next .. acked + window."""
        limit = self.acked + self.window
        if self.last is not None and limit > self.last:
            limit = self.last
        send = self.sock.send
        while self.next <= limit:
            block = self.next
            i = block - self.chunk_first
            if self.chunk_first == 0 or not 0 <= i < self.chunk_count:
                self._fill(block)
                i = 0
                if self.last is not None and limit > self.last:
                    limit = self.last
                if block > limit:  # the file ended (shrank) before this block
                    break
            HEADER.pack_into(self.buf, i * (self.blksize + 4), OP_DATA, block & 0xFFFF)
            length = self.lengths[i]
            try:
                send(self.packets[i] if length == self.blksize else self.packets[i][: length + 4])
            except BlockingIOError:
                break  # socket buffer full: the rest goes when the client ACKs or on timeout
            self.next = block + 1
        self.sent_at = now

    def start(self, now: float) -> None:
        self._allocate()
        if self.waiting_oack:
            self.sock.send(self.oack)
            self.sent_at = now
        else:
            self.send_window(now)

    def on_packet(self, packet: bytes, now: float) -> bool:
        """Handle one packet from the client; True when the transfer is over."""
        if len(packet) < 4:
            return False
        opcode, number = HEADER.unpack_from(packet)
        if opcode == OP_ACK:
            if self.waiting_oack:
                if number != 0:
                    return False
                self.waiting_oack = False
                self.retries = 0
                self.send_window(now)
                return False
            delta = (number - self.acked) & 0xFFFF
            outstanding = self.next - 1 - self.acked
            if 0 < delta <= outstanding:
                self.acked += delta
                self.retries = 0
                if self.last is not None and self.acked >= self.last:
                    self.outcome = "ok"
                    return True
                if self.acked < self.next - 1:
                    # RFC 7440 section 4: the client acknowledged part of a window (it saw a gap);
                    # resume right after what it has.
                    self.resent += self.next - 1 - self.acked
                    self.next = self.acked + 1
                self.send_window(now)
            elif delta == 0 and self.window > 1 and outstanding > 0 and now - self.sent_at > 0.01:
                # Windowed client re-acknowledging after its own timeout: the whole window after
                # `acked` was lost. (A duplicate ACK in lockstep is ignored: RFC 1123 4.2.3.1,
                # the Sorcerer's Apprentice.)
                self.resent += outstanding
                self.next = self.acked + 1
                self.send_window(now)
            return False
        if opcode == OP_ERROR:
            # A client ending the transfer. ERROR 8 right after our OACK is the UEFI tsize probe:
            # PXE firmware asks for the size, then aborts and asks again for the file. Normal.
            probe = self.waiting_oack and self.acked == 0
            message = packet[4:].split(b"\0", 1)[0].decode("utf-8", "replace")
            self.outcome = f"{'probe' if probe else 'aborted'} (client error {number}: {message})"
            return True
        return False

    def on_timeout(self, now: float) -> bool:
        """Retransmit after `timeout` seconds of silence; True when the client is given up on."""
        if now - self.sent_at < self.timeout:
            return False
        self.retries += 1
        if self.retries > MAX_RETRIES:
            # Silence after our OACK is how some firmware ends its size probe (others send
            # ERROR 8): not a failed transfer. Silence in mid-transfer is.
            self.outcome = "no answer to OACK" if self.waiting_oack else "timeout"
            return True
        if self.waiting_oack:
            self.sock.send(self.oack)
            self.sent_at = now
            return False
        self.resent += self.next - 1 - self.acked
        self.next = self.acked + 1
        self.send_window(now)
        return False

    def close(self) -> None:
        self.sock.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def log(self, now: float) -> None:
        # One line per transfer (never per packet): who, what, how much, how long, with which options.
        delivered = min(self.acked * self.blksize, self.size) if self.outcome == "ok" else self.acked * self.blksize
        level = logging.WARNING if self.outcome == "timeout" else logging.INFO
        opts = ",".join(f"{k}={v}" for k, v in self.opts.oack.items()) or "-"
        fields = dict(
            client=f"{self.client[0]}:{self.client[1]}",
            file=self.filename,
            bytes=delivered,
            seconds=round(now - self.started, 3),
            options=opts,
            outcome=self.outcome,
        )
        if self.resent:
            fields["resent_blocks"] = self.resent
        if self.opts.ignored:
            fields["ignored"] = ",".join(f"{k}({v})" for k, v in self.opts.ignored.items())
        event(log, "tftp.transfer", level, **fields)
