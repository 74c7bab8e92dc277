"""DNS over TCP (RFC 1035 4.2.2, RFC 7766) for clients that may be hostile: one thread, one
selector, bounded per connection and overall.

It was a thread per connection with a cap of 32 and a 10 s idle timeout: 32 idle connections
(re-sent a byte every 9 s, forever) took every slot, and every new TCP query was closed unanswered.
What holds now (RFC 7766 section 10 asks for each of these limits; 6.2.3 for idle timeouts "on
the order of seconds"):

- A connection costs a socket and its buffers, not a thread. Sockets are non-blocking and one
  selector serves them all, so a slow or silent client never delays another's answer.
- Idle: a connection is closed when `idle` seconds pass without a whole query arriving (from the
  accept or the last query). A client that trickles a query a byte at a time is idle too.
- Per client address at most `per_client` connections, overall at most `total`. A new connection
  is always taken: at a cap, the connection that has waited longest since its last query (an idle
  one before one halfway through a query) is closed to make room, the client's own when it is at
  its own cap. So idle connections, from one address or from many, cannot keep a new query out;
  they only push each other out, and one address can churn only its own.
- Memory: at most one whole message waiting to be read (2 + 65535 bytes: the length prefix cannot
  say more) and about 64 KiB of unsent answers; past that the connection is not read until its
  client reads (pipelined queries, 6.2.1.1), and is closed when it is idle that long.

`make_room` is the admission decision (pure); `TcpListener` is the edge.
"""

from __future__ import annotations

import logging
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from bootsrv.log import event

log = logging.getLogger("bootsrv.dns")

MAX_INBOX = 2 + 0xFFFF  # one whole message and its length prefix
MAX_OUTBOX = 64 * 1024  # unsent answers before the connection stops being read
RECV = 16 * 1024
ACCEPT_BATCH = 8  # connections accepted per wakeup
TICK = 0.5  # the longest the loop sleeps: how soon stop() and expiries are noticed

Answer = Callable[[bytes, str], "bytes | None"]  # (query, peer "ip:port") -> reply or silence


@dataclass(frozen=True)
class TcpLimits:
    idle: float = 3.0  # seconds without a whole query before the server closes (RFC 7766 6.2.3)
    per_client: int = 8  # connections per client address
    total: int = 128  # connections overall


@dataclass(frozen=True)
class Connection:
    """What admission needs to know of an open connection."""

    key: Hashable
    peer: str  # the client's address
    since: float  # accept, or its last whole query
    busy: bool  # halfway through a query, or answers not yet sent


def make_room(open_: Sequence[Connection], peer: str, limits: TcpLimits) -> Hashable | None:
    """The key of the connection to close so a new one from `peer` can be taken, or None.

    At the client's own cap, its own; else at the overall cap, anyone's. Among those, idle before
    busy, then the one that has waited longest."""
    mine = [c for c in open_ if c.peer == peer]
    if len(mine) >= limits.per_client:
        pool = mine
    elif len(open_) >= limits.total:
        pool = list(open_)
    else:
        return None
    return min(pool, key=lambda c: (c.busy, c.since)).key


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    peer: str
    label: str  # "ip:port" for the log
    since: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)

    def state(self) -> Connection:
        return Connection(self, self.peer, self.since, bool(self.inbox or self.outbox))


class TcpListener:
    """Accepts on `sock` (bound and listening) and answers each query with `answer`."""

    def __init__(
        self, sock: socket.socket, answer: Answer, limits: TcpLimits, clock: Callable[[], float] = time.monotonic
    ):
        self.sock, self.answer, self.limits, self.clock = sock, answer, limits, clock
        self.sock.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._clients: dict[socket.socket, _Client] = {}
        self._stop = threading.Event()
        self.closed: Counter[str] = Counter()  # connections closed by reason, for tests and figures

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        self._selector.register(self.sock, selectors.EVENT_READ, None)
        try:
            while not stop.is_set():
                for key, mask in self._selector.select(self._timeout()):
                    if key.data is None:
                        self._accept()
                    else:
                        self._serve(key.data, mask)
                self._expire()
        except OSError:
            if not stop.is_set():
                raise
        finally:
            for client in list(self._clients.values()):
                self._close(client, "stopping")
            self._selector.close()

    def buffered(self) -> int:
        """The most bytes any one connection holds now (inbox and unsent answers), for tests and
        figures: bounded by MAX_INBOX + MAX_OUTBOX + one answer whatever a client sends."""
        return max((len(c.inbox) + len(c.outbox) for c in list(self._clients.values())), default=0)

    def _timeout(self) -> float:
        if not self._clients:
            return TICK
        first = min(c.since for c in self._clients.values()) + self.limits.idle
        return max(0.0, min(TICK, first - self.clock()))

    def _accept(self) -> None:
        # A bounded batch per wakeup, then the connections' own reads: a query that arrived right
        # after its connect is read before a burst of new connections can make it the oldest
        # and close it to make room. The rest of the burst waits in the accept queue.
        for _ in range(ACCEPT_BATCH):
            try:
                conn, (host, port) = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. out of descriptors: try again on the next wakeup
                if not self._stop.is_set():  # else: stop() closed the socket under us
                    event(log, "dns.tcp_accept_failed", logging.WARNING, error=exc.strerror or str(exc))
                return
            try:
                victim = make_room([c.state() for c in self._clients.values()], host, self.limits)
                if victim is not None:
                    self._close(victim, "make room")  # type: ignore[arg-type]  # keys are _Clients
                conn.setblocking(False)
                client = _Client(conn, host, f"{host}:{port}", self.clock())
                self._selector.register(conn, selectors.EVENT_READ, client)
                self._clients[conn] = client
            except Exception as exc:  # a bug costs this connection, not the listener
                event(log, "dns.failed", logging.ERROR, peer=host, error=repr(exc)[:200])
                conn.close()

    def _serve(self, client: _Client, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ and len(client.inbox) < MAX_INBOX:
                data = client.sock.recv(min(RECV, MAX_INBOX - len(client.inbox)))
                if not data:
                    self._close(client, "closed by client")
                    return
                client.inbox += data
            if not self._answer_whole_queries(client):
                return
            if client.outbox:
                del client.outbox[: client.sock.send(client.outbox)]
                self._answer_whole_queries(client)  # room again for queries waiting in the inbox
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._close(client, exc.strerror or str(exc))
            return
        except Exception as exc:  # a bug costs this connection, not the listener
            event(log, "dns.failed", logging.ERROR, peer=client.label, error=repr(exc)[:200])
            self._close(client, "error")
            return
        if client.sock in self._clients:
            self._watch(client)

    def _answer_whole_queries(self, client: _Client) -> bool:
        """Answer every whole query in the inbox while the outbox has room; False if the
        connection was closed (a message that gets silence: RFC 7766 has no way to skip it)."""
        inbox = client.inbox
        while len(client.outbox) < MAX_OUTBOX and len(inbox) >= 2:
            size = struct.unpack_from("!H", inbox)[0]
            if len(inbox) < 2 + size:
                break
            wire = bytes(inbox[2 : 2 + size])
            del inbox[: 2 + size]
            client.since = self.clock()
            out = self.answer(wire, client.label)
            if out is None:
                self._close(client, "message not answered")
                return False
            client.outbox += struct.pack("!H", len(out)) + out
        return True

    def _watch(self, client: _Client) -> None:
        events = 0
        if len(client.inbox) < MAX_INBOX and len(client.outbox) < MAX_OUTBOX:
            events |= selectors.EVENT_READ
        if client.outbox:
            events |= selectors.EVENT_WRITE
        if events:
            self._selector.modify(client.sock, events, client)
        else:  # cannot happen: a full inbox holds a whole query, answered unless the outbox is full
            self._close(client, "stalled")

    def _expire(self) -> None:
        deadline = self.clock() - self.limits.idle
        for client in [c for c in self._clients.values() if c.since <= deadline]:
            self._close(client, "idle")

    def _close(self, client: _Client, reason: str) -> None:
        if self._clients.pop(client.sock, None) is None:
            return
        try:
            self._selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()
        self.closed[reason] += 1
        event(log, "dns.tcp_closed", logging.DEBUG, peer=client.label, reason=reason)
