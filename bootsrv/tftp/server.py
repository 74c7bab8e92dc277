"""The TFTP server: epoll loops over transfers, tftpy's codec for the request and replies.

Why not tftpy's TftpServer with a subclass: its transfer state machine sends one DATA per ACK
(no RFC 7440 window, no timeout option), selects over a list rebuilt every packet, parses every
ACK into objects and logs (and formats) several lines per packet; its ERROR decoder logs at
error level, so every UEFI tsize probe would read as a failure. Measured here (bench/bench_tftp.py,
64 MiB, blksize 1468, loopback): stock tftpy 17 MiB/s lockstep and 21 MiB/s when asked for
windowsize 16 (ignored), against atftpd's 130 MiB/s with windowsize 16. So the transfer loop is
our own and lean; tftpy still decodes requests (TftpPacketFactory) and encodes OACK and ERROR.
Client packets during a transfer are parsed with struct: tftpy's ERROR decoder logs at error level.

Transfers: RFC 1350 (one new UDP port, the server's TID, per transfer), options per RFC 2347-2349
and the RFC 7440 window. The hot path allocates nothing per packet: blocks are read with one
preadv per chunk into a buffer that keeps a 4-byte DATA header in front of every block, so each
packet is one send() of a memoryview on a connected socket.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketERR, TftpPacketOACK, TftpPacketRRQ, TftpPacketWRQ
from tftpy.TftpShared import TftpException

from bootsrv.log import event
from bootsrv.tftp import paths
from bootsrv.tftp.options import Negotiated, negotiate
from bootsrv.tftp.paths import Refusal

log = logging.getLogger("bootsrv.tftp")

Dynamic = Callable[[str, str], "bytes | None"]

OP_RRQ, OP_WRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 2, 3, 4, 5, 6
MAX_RETRIES = 5  # retransmissions of one window before giving up (tftpd-hpa: 6 s at 1 s)
MAX_TRANSFERS = 1024  # each holds a socket; beyond this a request gets ERROR 0 "busy"
MAX_NETASCII = 16 << 20  # netascii is translated in memory; boot configs are small
TICK = 0.05  # seconds between retransmission scans (deadlines are whole seconds)
SNDBUF = 1 << 20
HANDOFF_CLAIM = 5.0  # seconds a handed-off client's TID stays claimed against duplicate requests  # a full window leaves at once; the default 208 KiB drops nothing, but headroom is cheap

IP_PKTINFO = 8  # linux/in.h; not exported by Python's socket module
_PKTINFO = struct.Struct("=i4s4s")  # struct in_pktinfo: ifindex, spec_dst (local address), addr
_ACK = struct.Struct("!HH")
_HEAD = struct.Struct("!HH")


class ErrorPacket(TftpPacketERR):
    """tftpy's ERROR packet with our message: its encoder only knows the eight stock texts."""

    def __init__(self, code: int, message: str):
        super().__init__()
        self.errorcode, self.errmsg = code, message

    def encode(self):
        text = self.errmsg.encode("utf-8", "replace")[:200]
        self.buffer = struct.pack(f"!HH{len(text)}sx", self.opcode, self.errorcode, text)
        return self


def request_address(ancdata) -> str | None:
    """The local address a request reached us on (in_pktinfo.ipi_spec_dst), from recvmsg."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            return socket.inet_ntoa(_PKTINFO.unpack_from(data)[1])
    return None


def error_packet(code: int, message: str) -> bytes:
    return ErrorPacket(code, message).encode().buffer


def oack_packet(options: dict[str, str]) -> bytes:
    pkt = TftpPacketOACK()
    pkt.options = options
    return pkt.encode().buffer


def netascii(data: bytes) -> bytes:
    """RFC 1350 / RFC 764 netascii: CR -> CR NUL, LF -> CR LF (CR first, or LF's CR would double)."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


@dataclass
class Request:
    """A decoded RRQ/WRQ, or why it cannot be served."""

    opcode: int
    filename: str
    mode: str
    options: dict[str, str]


def decode_request(packet: bytes) -> Request | Refusal:
    try:
        pkt = TftpPacketFactory().parse(packet)
    except (TftpException, UnicodeDecodeError, ValueError, struct.error) as exc:
        return Refusal(paths.ILLEGAL_OPERATION, f"malformed request: {exc}")
    if isinstance(pkt, TftpPacketWRQ):
        return Request(OP_WRQ, pkt.filename, pkt.mode, dict(pkt.options))
    if not isinstance(pkt, TftpPacketRRQ):
        return Refusal(paths.ILLEGAL_OPERATION, f"opcode {pkt.opcode} is not a request")
    return Request(OP_RRQ, pkt.filename, pkt.mode, dict(pkt.options))


class Transfer:
    """One read transfer: a window of DATA blocks to one client over one connected socket.

    Block numbers here are absolute (1, 2, ... beyond 65535); the wire carries them mod 2**16
    (rollover to 0, as tftp-hpa, atftp and iPXE expect for files over 32 MiB at blksize 512).
    """

    # Slots: attribute access is most of the Python time per packet.
    __slots__ = ("sock", "client", "filename", "fd", "data", "size", "opts", "blksize", "window", "timeout",
                 "started", "acked", "next", "last", "waiting_oack", "sent_at", "retries", "resent", "outcome",
                 "n", "buf", "iov", "packets", "lengths", "chunk_first", "chunk_count", "oack", "stride")

    def __init__(self, sock: socket.socket, client: tuple[str, int], filename: str, fd: int | None,
                 data: bytes | None, size: int, opts: Negotiated, now: float):
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
        self.iov = [mv[i * stride + 4:(i + 1) * stride] for i in range(self.n)]
        self.packets = [mv[i * stride:(i + 1) * stride] for i in range(self.n)]
        self.lengths = [0] * self.n

    def _fill(self, first: int) -> None:
        offset = (first - 1) * self.blksize
        if self.fd is not None:
            got = os.preadv(self.fd, self.iov, offset)
        else:
            got = max(0, min(len(self.data) - offset, self.n * self.blksize))
            pos = offset
            for view in self.iov:
                take = min(self.blksize, offset + got - pos)
                if take <= 0:
                    break
                view[:take] = self.data[pos:pos + take]
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
            _HEAD.pack_into(self.buf, i * (self.blksize + 4), OP_DATA, block & 0xFFFF)
            length = self.lengths[i]
            try:
                send(self.packets[i] if length == self.blksize else self.packets[i][:length + 4])
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
        opcode, number = _ACK.unpack_from(packet)
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
        fields = dict(client=f"{self.client[0]}:{self.client[1]}", file=self.filename, bytes=delivered,
                      seconds=round(now - self.started, 3), options=opts, outcome=self.outcome)
        if self.resent:
            fields["resent_blocks"] = self.resent
        if self.opts.ignored:
            fields["ignored"] = ",".join(f"{k}({v})" for k, v in self.opts.ignored.items())
        event(log, "tftp.transfer", level, **fields)


class TftpServer:
    """Serves `root` read-only on (address, port). `dynamic(path, client_ip)` is asked first.

    `workers` threads each run an epoll loop and take requests from the one listening socket
    (EPOLLEXCLUSIVE: one worker wakes per request); they decide every request. With `processes`,
    disk transfers are then handed to that many pump processes (pump.py) and run there: CPython
    runs one thread at a time, and a busy host schedules by task, so one process serving 50
    clients gets one share against those clients' 50 (bench: 14.8 s for 50x20 MiB without pumps,
    12.9 s with 4; threads alone did not help, 14.2 s with 2). Dynamic files stay here.
    """

    def __init__(self, root: str, address: str = "127.0.0.1", port: int = 69, dynamic: Dynamic | None = None,
                 workers: int = 2, processes: int = 0):
        self.root = os.path.realpath(root)
        self.address, self.requested_port = address, port
        self.dynamic = dynamic
        # tftpy's decoder logs ~20 debug lines per request; we log one line per transfer.
        logging.getLogger("tftpy").setLevel(logging.WARNING)
        self.workers = max(1, workers)
        self.sock: socket.socket | None = None
        self.port = port
        # Requests under way by client (address, port): a retransmitted RRQ must not start a
        # second transfer (RFC 1350: the same TID). Shared by the workers; dict ops are atomic.
        self.clients: dict[tuple[str, int], Transfer] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.processes = processes
        self.pktinfo = False
        self.pumps: list = []
        self._next_pump = 0

    # -- lifecycle -------------------------------------------------------------------------

    def bind(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.address, self.requested_port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        if self.address == "0.0.0.0":
            # Listening on every address: learn which one each request was sent to (in_pktinfo).
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            self.pktinfo = True
        self.sock = sock
        self.port = sock.getsockname()[1]

    def start(self) -> None:
        if self.sock is None:
            self.bind()
        if self.processes:
            from bootsrv.tftp.pump import Pump

            self.pumps = [Pump() for _ in range(self.processes)]
        self._threads = [threading.Thread(target=self.serve, name=f"tftp-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        for pump in self.pumps:
            pump.close()
        if self.sock is not None:
            self.sock.close()

    def serve(self) -> None:
        """One worker's loop, until stop()."""
        assert self.sock is not None
        worker = _Worker(self._stop, self.clients)
        worker.add_source(self.sock.fileno(), self.on_requests, exclusive=True)
        for pump in self.pumps:
            worker.add_source(pump.sock.fileno(), lambda w, now, p=pump: self._pump_news(w, p), exclusive=True)
        worker.run()

    def _pump_news(self, worker: _Worker, pump) -> None:
        """A pump finished transfers: release their clients' claims at once, so the same client
        port may ask again (firmware that probes tsize, sends ERROR 8 and asks again from the
        same port must not wait for the claim to expire)."""
        for _ in range(64):
            try:
                msg = pump.sock.recv(256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if not msg:  # the pump is gone: stop watching its socket (EOF stays readable)
                pump.dead = True
                fd = pump.sock.fileno()
                if fd in worker.sources:
                    worker.ep.unregister(fd)
                    del worker.sources[fd]
                return
            ip, _, port = msg.decode().rpartition(":")
            client = (ip, int(port))
            if isinstance(self.clients.get(client), float):
                self.clients.pop(client, None)

    def on_requests(self, worker: _Worker, now: float) -> None:
        # Drain a burst (50 clients at once) in one wakeup, but leave some for the other workers.
        for _ in range(8):
            local = None
            try:
                if self.pktinfo:
                    packet, ancdata, _flags, client = self.sock.recvmsg(1024, socket.CMSG_SPACE(12))
                    local = request_address(ancdata)
                else:
                    packet, client = self.sock.recvfrom(1024)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            # Claim the client's TID first (setdefault is atomic): a retransmitted request for a
            # transfer under way, even one another worker is still opening, starts nothing.
            claim = object()
            held = self.clients.setdefault(client, claim)
            if held is not claim:
                if not (isinstance(held, float) and held < now):
                    continue
                self.clients[client] = claim  # a handed-off transfer's claim that has expired
            try:
                tr = self.accept(packet, client, len(self.clients), now, local)
            except Exception as exc:  # one bad request (or a failing dynamic source) never stops the server
                event(log, "tftp.request_failed", logging.ERROR, client=f"{client[0]}:{client[1]}", error=repr(exc))
                self.refuse(client, Refusal(paths.NOT_DEFINED, "internal error"), local=local)
                tr = None
            if tr is None:
                self.clients.pop(client, None)
                continue
            if self.pumps and tr.fd is not None and self._hand_off(tr, now):
                continue
            self.clients[client] = tr
            worker.add(tr, now)

    def _hand_off(self, tr: Transfer, now: float) -> bool:
        """Give a disk transfer to a pump process; False (serve it here) if none takes it."""
        if len(self.clients) > 256:
            for client, held in list(self.clients.items()):
                if isinstance(held, float) and held < now:
                    self.clients.pop(client, None)
        for _ in range(len(self.pumps)):
            self._next_pump = (self._next_pump + 1) % len(self.pumps)
            if self.pumps[self._next_pump].send(tr):
                # The pump now owns the transfer; the claim keeps retransmitted requests from
                # starting a second one while it runs (a client retries within seconds).
                self.clients[tr.client] = now + HANDOFF_CLAIM
                tr.close()
                return True
        return False

    # -- requests --------------------------------------------------------------------------

    def reply_socket(self, client: tuple[str, int], local: str | None = None) -> socket.socket:
        # RFC 1350: every transfer (and the error answering a request) comes from a fresh port,
        # and from the address the client asked: PXE ROMs drop replies from any other.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((local or self.address, 0))
            sock.connect(client)
        except OSError:
            sock.close()
            raise
        return sock

    def refuse(self, client: tuple[str, int], refusal: Refusal, filename: str = "", local: str | None = None) -> None:
        level = logging.DEBUG if refusal.code == paths.FILE_NOT_FOUND else logging.INFO
        event(log, "tftp.refused", level, client=f"{client[0]}:{client[1]}", file=filename,
              code=refusal.code, reason=refusal.reason)
        try:
            with self.reply_socket(client, local) as sock:
                sock.send(error_packet(refusal.code, refusal.reason))
        except OSError:
            pass

    def accept(self, packet: bytes, client: tuple[str, int], busy: int, now: float,
               local: str | None = None) -> Transfer | None:
        """Decide a request: a Transfer to start, or None (refused with an ERROR).

        `local` is the address the request was sent to, when listening on 0.0.0.0.
        """

        def refuse(client, refusal, filename=""):
            return self.refuse(client, refusal, filename, local)

        req = decode_request(packet)
        if isinstance(req, Refusal):
            return refuse(client, req)
        if req.opcode == OP_WRQ:
            return refuse(client, Refusal(paths.ACCESS_VIOLATION, "read-only server: writes are refused"),
                               req.filename)
        if req.mode not in ("octet", "netascii"):
            return refuse(client, Refusal(paths.ILLEGAL_OPERATION, f"unsupported mode {req.mode!r}"),
                               req.filename)
        if busy >= MAX_TRANSFERS:
            return refuse(client, Refusal(paths.NOT_DEFINED, "server busy, try again"), req.filename)
        name = paths.normalise(req.filename)
        if isinstance(name, Refusal):
            return refuse(client, name, req.filename)
        fd, data = None, None
        if self.dynamic is not None:
            data = self.dynamic(name, client[0])
        if data is not None:
            size = len(data)
        else:
            opened = paths.open_inside(self.root, name)
            if isinstance(opened, Refusal):
                return refuse(client, opened, req.filename)
            fd, size = opened
        if req.mode == "netascii":
            if fd is not None:
                try:
                    if size > MAX_NETASCII:
                        return refuse(client, Refusal(paths.ACCESS_VIOLATION, "file too large for netascii"),
                                           req.filename)
                    data = os.pread(fd, size, 0)
                finally:
                    os.close(fd)
                fd = None
            data = netascii(data)
            size = len(data)
        opts = negotiate(req.options, size)
        try:
            sock = self.reply_socket(client, local)
        except OSError:
            if fd is not None:
                os.close(fd)
            raise
        sock.setblocking(False)
        if opts.windowsize > 1:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        return Transfer(sock, client, name, fd, data, size, opts, now)


class _Worker:
    """One epoll loop over its transfers, plus sources of new ones (the request socket in the
    server, the hand-off socket in a pump process): `sources` maps fd -> callback(worker, now)."""

    def __init__(self, stop: threading.Event, clients: dict | None,
                 on_finish: Callable[[Transfer], None] | None = None):
        self.stop, self.clients, self.on_finish = stop, clients, on_finish
        self.transfers: dict[int, Transfer] = {}
        self.sources: dict[int, Callable[[_Worker, float], None]] = {}
        self.ep = select.epoll()

    def add_source(self, fd: int, callback: Callable[[_Worker, float], None], exclusive: bool = False) -> None:
        self.sources[fd] = callback
        self.ep.register(fd, select.EPOLLIN | (select.EPOLLEXCLUSIVE if exclusive else 0))

    def add(self, tr: Transfer, now: float) -> None:
        fd = tr.sock.fileno()
        self.transfers[fd] = tr
        self.ep.register(fd, select.EPOLLIN)
        try:
            tr.start(now)
        except OSError as exc:
            tr.outcome = f"send failed: {errno.errorcode.get(exc.errno, exc)}"
            self.finish(fd, tr, now)

    def run(self) -> None:
        transfers, sources, stop = self.transfers, self.sources, self.stop
        poll, monotonic = self.ep.poll, time.monotonic
        next_scan = monotonic() + TICK
        try:
            while not stop.is_set():
                events = poll(TICK)
                now = monotonic()
                for fd, _mask in events:
                    tr = transfers.get(fd)
                    if tr is None:
                        if fd in sources:
                            sources[fd](self, now)
                        continue
                    try:
                        done = tr.on_packet(tr.sock.recv(1024), now)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:  # ICMP port unreachable: the client is gone
                        tr.outcome, done = "client unreachable", True
                    if done:
                        self.finish(fd, tr, now)
                if now >= next_scan:
                    next_scan = now + TICK
                    for fd, tr in list(transfers.items()):
                        try:
                            gone = tr.on_timeout(now)
                        except OSError:
                            tr.outcome, gone = "client unreachable", True
                        if gone:
                            self.finish(fd, tr, now)
        finally:
            for fd, tr in list(transfers.items()):
                tr.outcome = tr.outcome or "server stopped"
                self.finish(fd, tr, monotonic())
            self.ep.close()

    def finish(self, fd: int, tr: Transfer, now: float) -> None:
        self.ep.unregister(fd)
        del self.transfers[fd]
        if self.clients is not None:
            self.clients.pop(tr.client, None)
        tr.close()
        tr.log(now)
        if self.on_finish is not None:
            self.on_finish(tr)
