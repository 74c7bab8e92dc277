"""The DNS socket edge: UDP and TCP listeners over the pure `answer`, and a zone cache that
follows the lease store. The TCP listener and its limits are bootsrv.dns.tcp.

`respond(wire, zones, limit)` is the whole per-packet decision (bytes in, bytes or silence out), so
malformed input is tested without a socket. The listeners only move bytes.
"""

from __future__ import annotations

import functools
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable

from dnslib import RCODE, DNSRecord

from bootsrv.config import Config
from bootsrv.dns.answer import CLASSIC_UDP, answer, error, max_udp_size, truncate
from bootsrv.dns.tcp import TcpLimits, TcpListener
from bootsrv.dns.zone import Host, ZoneData, build_zones
from bootsrv.log import event

log = logging.getLogger("bootsrv.dns")

HostSource = Callable[[], Iterable[Host]]

_HEADER = struct.Struct("!HHHHHH")


def respond(wire: bytes, zones: ZoneData, limit: int | None = CLASSIC_UDP, peer: str = "-") -> bytes | None:
    """The response to one DNS message, or None to stay silent.

    Responses (QR=1) get silence, so two servers can never be made to talk to each other in a
    loop. A message too short for a header gets silence too; one with a header that does not parse
    gets FORMERR carrying its ID (RFC 1035 4.1.1). `limit` is the UDP size limit (None over TCP).
    """
    if len(wire) < _HEADER.size:
        event(log, "dns.malformed", logging.DEBUG, peer=peer, rule=f"{len(wire)} bytes, a header has 12")
        return None
    ident, flags = _HEADER.unpack_from(wire)[:2]
    if flags & 0x8000:
        return None
    try:
        query = DNSRecord.parse(wire)
    except Exception as exc:  # any parse failure of network input is the client's error
        event(log, "dns.malformed", peer=peer, id=ident, error=str(exc)[:120])
        return _formerr(ident, flags)
    try:
        reply = answer(query, zones)
    except Exception as exc:  # a bug must cost one answer, not the server
        event(log, "dns.failed", logging.ERROR, peer=peer, id=ident, error=repr(exc)[:200])
        reply = error(query, RCODE.SERVFAIL)
    try:
        if limit is None:
            return reply.pack()
        return truncate(reply, max(limit, max_udp_size(query)))
    except Exception as exc:  # e.g. a question name dnslib parsed but cannot re-encode
        event(log, "dns.malformed", peer=peer, id=ident, error=str(exc)[:120])
        return _formerr(ident, flags)


def _formerr(ident: int, flags: int) -> bytes:
    # Header only: QR=1, the query's opcode and RD, RCODE=FORMERR (1), all counts zero.
    out_flags = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | RCODE.FORMERR
    return _HEADER.pack(ident, out_flags, 0, 0, 0, 0)


class ZoneCache:
    """The current ZoneData, rebuilt from `source` when older than `max_age` seconds.

    The serial (SOA) moves forward only when the published names change, so a secondary or a
    cache sees a new serial exactly when there is something new to see.
    """

    def __init__(
        self, config: Config, source: HostSource, clock: Callable[[], float] = time.time, max_age: float | None = None
    ):
        self.config = config
        self.source = source
        self.clock = clock
        self.max_age = float(config.server.rescan_interval if max_age is None else max_age)
        self._lock = threading.Lock()
        self._zones: ZoneData | None = None
        self._built_at = 0.0
        self._hosts: frozenset[Host] | None = None
        self._serial = 0

    def current(self) -> ZoneData:
        now = self.clock()
        with self._lock:
            if self._zones is None or now - self._built_at >= self.max_age:
                self._refresh(now)
            assert self._zones is not None
            return self._zones

    def _refresh(self, now: float) -> None:
        try:
            hosts = frozenset(self.source())
        except Exception as exc:  # store unreadable: keep answering from the last good view
            event(log, "dns.source_failed", logging.WARNING, error=repr(exc)[:200])
            if self._zones is None:
                hosts = frozenset()
            else:
                self._built_at = now
                return
        if self._zones is None or hosts != self._hosts:
            self._serial = max(self._serial + 1, int(now))
            self._hosts = hosts
            self._zones = build_zones(self.config, hosts, self._serial)
            event(log, "dns.zones", names=len(self._zones.addresses), serial=self._serial)
        self._built_at = now


class DnsServer:
    """UDP and TCP listeners on (address, port) answering from a ZoneCache, each in a thread.

    TCP (bootsrv.dns.tcp) is one selector thread with per-client limits (`tcp_limits`: idle
    timeout, connections per client address and overall), so idle or slow clients cannot keep
    a new query out or hold up another's answer."""

    name = "dns"

    def __init__(self, address: str, port: int, zones: ZoneCache, tcp_limits: TcpLimits | None = None):
        self.address, self.port, self.zones = address, port, zones
        self.tcp_limits = tcp_limits or TcpLimits()
        self.tcp: TcpListener | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None

    def start(self) -> None:
        self.zones.current()  # build once up front: a broken source shows at startup
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._udp.bind((self.address, self.port))
        self._udp.settimeout(0.5)  # wake up to notice stop()
        self.port = self._udp.getsockname()[1]  # port 0 in tests: the kernel's choice
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((self.address, self.port))
        self._tcp.listen(1024)  # a burst of connects waits in the kernel (capped by net.core.somaxconn)
        self.tcp = TcpListener(self._tcp, self._answer_tcp, self.tcp_limits)
        tcp = functools.partial(self.tcp.run, self._stop)
        for target, name in ((self._serve_udp, "dns-udp"), (tcp, "dns-tcp")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        event(log, "listening", service="dns", address=self.address, port=self.port)

    def stop(self) -> None:
        self._stop.set()
        for sock in (self._udp, self._tcp):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def _serve_udp(self) -> None:
        sock = self._udp
        assert sock is not None
        while not self._stop.is_set():
            try:
                wire, peer = sock.recvfrom(65535)
            except OSError:
                if self._stop.is_set():
                    return
                continue
            out = respond(wire, self.zones.current(), CLASSIC_UDP, f"{peer[0]}:{peer[1]}")
            if out is not None:
                try:
                    sock.sendto(out, peer)
                except OSError as exc:
                    event(log, "dns.send_failed", logging.WARNING, peer=peer[0], error=str(exc))

    def _answer_tcp(self, wire: bytes, peer: str) -> bytes | None:
        return respond(wire, self.zones.current(), None, peer)  # no size limit over TCP
