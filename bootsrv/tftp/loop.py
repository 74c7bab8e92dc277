"""The epoll loop that runs transfers: their packets, their retransmission clock, their end.

One TransferLoop runs in each of the server's worker threads and in each pump process
(bootsrv.tftp.pump). Besides its transfers it watches sources of new ones (the request socket in
the server, the hand-off socket in a pump): `sources` maps fd -> callback(loop, now). Time is
time.monotonic, read once per wakeup and passed down, so a Transfer never reads a clock.
"""

from __future__ import annotations

import errno
import select
import threading
import time
from collections.abc import Callable

from bootsrv.tftp.transfer import Transfer

# Seconds between retransmission scans: deadlines are whole seconds (RFC 2349 timeout 1..255), so
# a retransmission goes out at most one tick late.
TICK = 0.05

Source = Callable[["TransferLoop", float], None]


class Opening:
    """A worker's claim on a client TID while it decides that client's request. Each request
    gets its own: the worker whose setdefault placed it knows its own claim by identity."""

    __slots__ = ()


# The server's table of claimed client TIDs (RFC 1350: a retransmitted request starts nothing),
# one dict so that claiming stays one atomic setdefault. Per client: the request being decided,
# the Transfer serving it in this process, or, once handed to a pump process, the monotonic time
# the claim expires.
Clients = dict[tuple[str, int], Opening | Transfer | float]


class TransferLoop:
    """One epoll loop over its transfers, plus sources of new ones, until `stop` is set.

    `clients` is the server's table of claimed client TIDs (None in a pump): a finished
    transfer's client is released there. `on_finish(transfer)` is told of every finished one.
    """

    def __init__(
        self, stop: threading.Event, clients: Clients | None, on_finish: Callable[[Transfer], None] | None = None
    ):
        self.stop, self.clients, self.on_finish = stop, clients, on_finish
        self.transfers: dict[int, Transfer] = {}
        self.sources: dict[int, Source] = {}
        self.ep = select.epoll()

    def add_source(self, fd: int, callback: Source, exclusive: bool = False) -> None:
        self.sources[fd] = callback
        self.ep.register(fd, select.EPOLLIN | (select.EPOLLEXCLUSIVE if exclusive else 0))

    def remove_source(self, fd: int) -> None:
        """Stop watching a source (a pump's socket at EOF stays readable forever)."""
        if fd in self.sources:
            self.ep.unregister(fd)
            del self.sources[fd]

    def add(self, tr: Transfer, now: float) -> None:
        fd = tr.sock.fileno()
        self.transfers[fd] = tr
        self.ep.register(fd, select.EPOLLIN)
        try:
            tr.start(now)
        except OSError as exc:
            code = errno.errorcode.get(exc.errno) if exc.errno is not None else None
            tr.outcome = f"send failed: {code or exc}"
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
