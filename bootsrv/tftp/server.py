"""The TFTP server: the request socket, its worker threads, and the decision on each request.

It owns the listening socket (RFC 1350: requests come to port 69, each transfer then runs from
a fresh port, the server's TID), the table of clients with a transfer under way (so a
retransmitted request starts nothing), and the decision on a request: refuse it with an ERROR,
or open what it names (the `dynamic` source first, then the disk, confined by bootsrv.tftp.paths),
negotiate its options (bootsrv.tftp.options) and start a Transfer (bootsrv.tftp.transfer) in
this process or hand it to a pump process (bootsrv.tftp.pump).

Why not tftpy's TftpServer with a subclass: its transfer state machine sends one DATA per ACK
(no RFC 7440 window, no timeout option), selects over a list rebuilt every packet, parses every
ACK into objects and logs (and formats) several lines per packet; its ERROR decoder logs at
error level, so every UEFI tsize probe would read as a failure. Measured against atftpd and
tftpd-hpa in docs/tftp.md. tftpy still decodes requests and encodes OACK and ERROR
(bootsrv.tftp.packet); the data path is ours.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from functools import partial

from bootsrv.log import event
from bootsrv.tftp import paths
from bootsrv.tftp.loop import Clients, Opening, TransferLoop
from bootsrv.tftp.options import negotiate
from bootsrv.tftp.packet import OP_WRQ, decode_request, error_packet, netascii
from bootsrv.tftp.paths import Refusal
from bootsrv.tftp.pump import Pump
from bootsrv.tftp.transfer import Transfer

log = logging.getLogger("bootsrv.tftp")

Dynamic = Callable[[str, str], "bytes | None"]

MAX_TRANSFERS = 1024  # each holds a socket; beyond this a request gets ERROR 0 "busy"
MAX_NETASCII = 16 << 20  # netascii is translated in memory; boot configs are small
# A full window leaves at once; the default (208 KiB) drops nothing, but headroom is cheap.
SNDBUF = 1 << 20
HANDOFF_CLAIM = 5.0  # seconds a handed-off client's TID stays claimed against duplicate requests

IP_PKTINFO = 8  # linux/in.h; not exported by Python's socket module
_PKTINFO = struct.Struct("=i4s4s")  # struct in_pktinfo: ifindex, spec_dst (local address), addr


def request_address(ancdata: Iterable[tuple[int, int, bytes]]) -> str | None:
    """The local address a request reached us on (in_pktinfo.ipi_spec_dst), from recvmsg."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            return socket.inet_ntoa(_PKTINFO.unpack_from(data)[1])
    return None


class TftpServer:
    """Serves `root` read-only on (address, port). `dynamic(path, client_ip)` is asked first.

    `workers` threads each run an epoll loop and take requests from the one listening socket
    (EPOLLEXCLUSIVE: one worker wakes per request); they decide every request. With `processes`,
    disk transfers are then handed to that many pump processes (pump.py) and run there: CPython
    runs one thread at a time, and a busy host schedules by task, so one process serving 50
    clients gets one share against those clients' 50; more threads do not help (the figures are
    in docs/tftp.md). Dynamic files stay here.
    """

    def __init__(
        self,
        root: str,
        address: str = "127.0.0.1",
        port: int = 69,
        dynamic: Dynamic | None = None,
        workers: int = 2,
        processes: int = 0,
    ):
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
        self.clients: Clients = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.processes = processes
        self.pktinfo = False
        self.pumps: list[Pump] = []
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
            self.pumps = [Pump() for _ in range(self.processes)]
        self._threads = [
            threading.Thread(target=self.serve, name=f"tftp-{i}", daemon=True) for i in range(self.workers)
        ]
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
        assert self.sock is not None  # start() binds before it starts the workers
        worker = TransferLoop(self._stop, self.clients)
        worker.add_source(self.sock.fileno(), partial(self.on_requests, self.sock), exclusive=True)
        for pump in self.pumps:
            worker.add_source(pump.sock.fileno(), partial(self._pump_news, pump), exclusive=True)
        worker.run()

    def _pump_news(self, pump: Pump, worker: TransferLoop, _now: float) -> None:
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
                worker.remove_source(pump.sock.fileno())
                return
            ip, _, port = msg.decode().rpartition(":")
            client = (ip, int(port))
            if isinstance(self.clients.get(client), float):
                self.clients.pop(client, None)

    def on_requests(self, sock: socket.socket, worker: TransferLoop, now: float) -> None:
        # Drain a burst (50 clients at once) in one wakeup, but leave some for the other workers.
        for _ in range(8):
            local = None
            try:
                if self.pktinfo:
                    packet, ancdata, _flags, client = sock.recvmsg(1024, socket.CMSG_SPACE(12))
                    local = request_address(ancdata)
                else:
                    packet, client = sock.recvfrom(1024)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            # Claim the client's TID first (setdefault is atomic): a retransmitted request for a
            # transfer under way, even one another worker is still opening, starts nothing.
            claim = Opening()
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
        event(
            log,
            "tftp.refused",
            level,
            client=f"{client[0]}:{client[1]}",
            file=filename,
            code=refusal.code,
            reason=refusal.reason,
        )
        try:
            with self.reply_socket(client, local) as sock:
                sock.send(error_packet(refusal.code, refusal.reason))
        except OSError:
            pass

    def accept(
        self, packet: bytes, client: tuple[str, int], busy: int, now: float, local: str | None = None
    ) -> Transfer | None:
        """Decide a request: a Transfer to start, or None (refused with an ERROR).

        `local` is the address the request was sent to, when listening on 0.0.0.0.
        """

        def refuse(client, refusal, filename=""):
            return self.refuse(client, refusal, filename, local)

        req = decode_request(packet)
        if isinstance(req, Refusal):
            return refuse(client, req)
        if req.opcode == OP_WRQ:
            return refuse(client, Refusal(paths.ACCESS_VIOLATION, "read-only server: writes are refused"), req.filename)
        if req.mode not in ("octet", "netascii"):
            return refuse(client, Refusal(paths.ILLEGAL_OPERATION, f"unsupported mode {req.mode!r}"), req.filename)
        if busy >= MAX_TRANSFERS:
            return refuse(client, Refusal(paths.NOT_DEFINED, "server busy, try again"), req.filename)
        name = paths.normalise(req.filename)
        if isinstance(name, Refusal):
            return refuse(client, name, req.filename)
        fd, data = None, None
        if self.dynamic is not None:
            data = self.dynamic(name, client[0])
        if data is None:
            opened = paths.open_inside(self.root, name)
            if isinstance(opened, Refusal):
                return refuse(client, opened, req.filename)
            fd, size = opened
            if req.mode == "netascii":  # translated in memory: read the file whole
                try:
                    if size > MAX_NETASCII:
                        return refuse(
                            client, Refusal(paths.ACCESS_VIOLATION, "file too large for netascii"), req.filename
                        )
                    data = os.pread(fd, size, 0)
                finally:
                    os.close(fd)
                fd = None
        if data is not None:  # a dynamic file, or a disk file read whole for netascii
            if req.mode == "netascii":
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
