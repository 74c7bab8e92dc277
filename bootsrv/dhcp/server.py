"""The DHCP socket loop: receive, hand the bytes to a handler, send what it returns. No DHCP logic.

Sockets. One UDP socket per configured interface, bound to 0.0.0.0:port with SO_BINDTODEVICE, so
a broadcast DISCOVER arriving on an interface no network names never reaches us and a broadcast
reply leaves by the interface its request came in on. When some network is served through relay
agents, one more socket without a device receives the relays' unicast (RFC 2131 4.1: the relay
sends to the server's address, port 67); the handler answers there only when giaddr is a
configured relay. With no interface and no relay configured no socket is opened at all.

Replies to a client that has no address yet. RFC 2131 4.1: with the broadcast bit clear and
ciaddr 0 the server "unicasts DHCPOFFER and DHCPACK messages to the client's hardware address and
'yiaddr' address". The kernel would ARP for yiaddr, which the client cannot answer yet, so we put
the client's MAC into the neighbour table first with the SIOCSARP ioctl (as dnsmasq does on
Linux): one syscall, no extra process (`ip neigh replace` costs a fork per reply) and no hand-built
Ethernet/IP/UDP frames (a packet socket would also bypass the kernel's routing and firewall). When
the ioctl fails (no address of ours on that subnet, a non-Ethernet hardware type) we broadcast
instead, which every client must accept (RFC 2131 4.1, RFC 1542 3.1.1).

Threads. Each socket has `workers` threads that wait in poll() on it; a non-blocking recvfrom()
hands each datagram to exactly one of them, which decodes, decides and replies. One is the
default: several only fight over the GIL (fewer DORA/s in bench/bench_dhcp.py, docs/dhcp.md).
More help only when a handler blocks (dhcp.icmp_check waits for an echo). No queue in between:
a hand-off between Python threads costs more than the work for a DISCOVER. Under overload the
socket's receive buffer fills and the kernel drops the newest packets (clients retransmit); the
buffer is kept to a fraction of a second of traffic so we do not answer requests their clients
gave up on long ago, and the handler sheds DISCOVERs while it is more than half full
(Arrival.backlog, bootsrv/app/dhcp.py).

Several processes (dhcp.processes, bootsrv/app/dhcp_processes.py). Every process binds the same
sockets with SO_REUSEPORT and the group gets a classic BPF program that picks the socket by the
client's MAC (the last chaddr byte, modulo the process count), so all of a client's messages
reach the process that holds its offer. The kernel runs the program on the UDP payload
(net/core/sock_reuseport.c pulls the UDP header first): chaddr starts at byte 28 (RFC 2131 2).
Process 0 binds first and starts the others in order, so the group's index k is process k.

That steers unicast (relays, renewals). A broadcast datagram the kernel copies to every socket
of the port (net/ipv4/udp.c __udp4_lib_mcast_deliver knows no reuseport groups), so each socket
also has a filter (SO_ATTACH_FILTER) that keeps only the broadcasts the same rule gives to its
process: the other copies are dropped in the kernel and wake nobody. The filter lets unicast
through: the group chose the socket for that, and the index a socket has in the group is not
fixed (below).

When a process is gone its index is out of range and the kernel falls back to its hash for
unicast; broadcasts for it wait for its restart (the client retransmits, RFC 2131 4.1) instead
of being answered by a process that does not hold the offer. The restarted process joins the
group at the end (the kernel moved the last socket into the hole), after which a MAC's unicast
may reach another process than its broadcasts: safe (the client's leases are in the shared
store, every write a compare-and-swap), only its in-memory offer is missed.

Batches. A handler may instead return a Deferred: a reply that may go out only once its lease
is on stable storage (the store's Pending). A worker takes every datagram waiting, up to BATCH:
it sends OFFERs and NAKs at once and keeps the Deferred ones; then it asks the first for
durability, which leads one group flush (fdatasync) covering the whole batch, and sends the ACKs
in order. An ACK whose commit failed is never sent. The worker thread itself flushes: an ACK
completed by the store's flusher thread cost two GIL hand-offs and a thread wake-up per ACK, and
the hand-offs made every system call of the worker slower; batches halved the CPU per DORA
(docs/dhcp.md, "Measured"). While the worker waits for the disk, datagrams queue in the socket (about 0.2 s
of room, see above) and make the next batch larger, so the fsyncs per ACK fall as load rises.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import NamedTuple, Protocol

from bootsrv.errors import MalformedPacket
from bootsrv.log import event, failure

log = logging.getLogger("bootsrv.dhcp")

CLIENT_PORT = 68
# Large enough for any DHCP message we accept (RFC 2131 2: 576 is the minimum every client takes;
# jumbo options with option 57 can go further) without truncation.
RECV_SIZE = 65535
SIOCSARP = 0x8955  # linux/sockios.h
ATF_COM = 0x02  # completed entry (linux/if_arp.h)
ARPHRD_ETHER = 1
SO_MEMINFO = 55  # asm-generic/socket.h: u32 sk_meminfo[], [0] rmem_alloc, [1] rcvbuf (linux/sock_diag.h)
BATCH = 32  # datagrams decided per flush, at most (see "Batches")


# Arrival, Outgoing and Deferred are made for every datagram: NamedTuples, as a frozen
# dataclass's __init__ costs an object.__setattr__ per field.
class Arrival(NamedTuple):
    """Where a packet came from: the device its socket is bound to (None: the relay socket)."""

    interface: str | None
    peer: tuple[str, int]
    received: float  # time.monotonic() at receipt; the handler's clock is its own
    # How full the socket's receive buffer was (0..1) when this datagram's batch began: how a
    # handler sees that it is behind. Read only after a full batch (see DhcpServer._serve).
    backlog: float = 0.0


class Outgoing(NamedTuple):
    """A reply and where it goes; `hwaddr` asks for a neighbour entry first (see the module doc)."""

    payload: bytes
    address: IPv4Address
    port: int
    hwaddr: bytes | None = None


class Durable(Protocol):
    """A write on its way to stable storage (the lease store's Pending): `result()` returns
    once it is there, or raises when it cannot be."""

    def result(self) -> object: ...


class Deferred(NamedTuple):
    """A reply that may go out only once `durable` is; `finish(durable.result())` builds it then
    (see "Batches")."""

    durable: Durable
    finish: Callable[[object], Outgoing | None]

    def result(self) -> Outgoing | None:
        """Make it durable here (tests, tools): what the loop would send."""
        return self.finish(self.durable.result())


# A handler answers now (Outgoing), never (None), or once its lease is durable (Deferred).
Handler = Callable[[bytes, Arrival], "Outgoing | Deferred | None"]


@functools.lru_cache(maxsize=4096)
def _text(address: IPv4Address) -> str:
    """str(address), remembered: IPv4Address.__str__ is Python code, ~5 % of a DORA here (py-spy)."""
    return str(address)


def describe(raw: bytes) -> dict[str, str]:
    """MAC and xid read at their fixed BOOTP offsets (RFC 2131 2), for the log line of a packet
    that could not be decoded."""
    out = {"bytes": str(len(raw))}
    if len(raw) >= 8:
        out["xid"] = f"0x{raw[4:8].hex()}"
    if len(raw) >= 34:
        hlen = raw[2] if 0 < raw[2] <= 16 else 6
        out["mac"] = ":".join(f"{b:02x}" for b in raw[28 : 28 + min(hlen, 6)])
    return out


def set_neighbour(sock: socket.socket, interface: str, ip: IPv4Address, mac: bytes) -> bool:
    """Add ip -> mac on `interface` to the kernel's ARP table (SIOCSARP). False when refused."""
    if len(mac) != 6 or not interface:
        return False
    pa = struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", 0, ip.packed)  # sa_family is host order
    ha = struct.pack("=H6s8x", ARPHRD_ETHER, mac)
    req = pa + ha + struct.pack("=i", ATF_COM) + bytes(16) + interface.encode()[:15].ljust(16, b"\0")
    try:
        fcntl.ioctl(sock.fileno(), SIOCSARP, req)
    except OSError:
        return False
    return True


SO_ATTACH_FILTER = 26  # asm-generic/socket.h
SO_ATTACH_REUSEPORT_CBPF = 51
CHADDR_LAST = 28 + 5  # the last byte of an Ethernet chaddr, from the start of the UDP payload
UDP_HEADER = 8
SKF_NET_OFF = (-0x100000) & 0xFFFFFFFF  # linux/filter.h: offsets from the network (IP) header


def _bpf(*instructions: tuple[int, int, int, int]) -> bytes:
    """struct sock_filter[]: (code, jump if true, jump if false, k) each."""
    return b"".join(struct.pack("=HBBI", *insn) for insn in instructions)


def steering_program(processes: int) -> bytes:
    """For the SO_REUSEPORT group: the index of the socket to take a datagram. The kernel runs it
    with the UDP header pulled (net/core/sock_reuseport.c), so offsets count from the payload."""
    return _bpf(
        (0x30, 0, 0, CHADDR_LAST),  # BPF_LD | BPF_B | BPF_ABS: A = chaddr's last byte (short packet: 0)
        (0x94, 0, 0, processes),  # BPF_ALU | BPF_MOD | BPF_K: A %= processes
        (0x16, 0, 0, 0),  # BPF_RET | BPF_A
    )


def broadcast_filter(processes: int, process: int) -> bytes:
    """For one process' socket: of the datagrams sent to 255.255.255.255, keep those whose MAC
    `steering_program` gives to this process and drop the others in the kernel; keep every
    unicast datagram (the group already chose this socket for it). UDP runs socket filters on
    the datagram from its UDP header (net/ipv4/udp.c, sk_filter_trim_cap), so the payload starts
    8 bytes in, and the IP header is reached through SKF_NET_OFF. A broadcast too short to hold
    a chaddr is dropped (it is no DHCP message)."""
    return _bpf(
        (0x20, 0, 0, SKF_NET_OFF + 16),  # BPF_LD | BPF_W | BPF_ABS: A = the IP destination
        (0x15, 0, 3, 0xFFFFFFFF),  # BPF_JMP | BPF_JEQ | BPF_K: broadcast? go on : keep
        (0x30, 0, 0, UDP_HEADER + CHADDR_LAST),
        (0x94, 0, 0, processes),
        (0x15, 0, 1, process),  # ours? keep : drop
        (0x06, 0, 0, 0xFFFFFFFF),  # BPF_RET | BPF_K: keep all of it
        (0x06, 0, 0, 0),  # drop
    )


def _attach(sock: socket.socket, option: int, program: bytes) -> None:
    code = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("@HP", len(program) // 8, ctypes.addressof(code))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, option, fprog)  # the kernel copies the program


def share_by_mac(sock: socket.socket, processes: int, process: int) -> None:
    """Unicast: the group hands each datagram to the socket its MAC picks. Broadcast: the kernel
    copies it to every socket of the port; the filter drops the copies of other processes before
    they wake anyone."""
    _attach(sock, SO_ATTACH_REUSEPORT_CBPF, steering_program(processes))
    _attach(sock, SO_ATTACH_FILTER, broadcast_filter(processes, process))


def receive_backlog(sock: socket.socket) -> float:
    """How full the receive buffer is, 0..1: the bytes queued (as the kernel counts them, with
    their overhead) against the limit at which it drops datagrams (SO_MEMINFO)."""
    queued, limit = struct.unpack("=II", sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 8))
    return queued / limit if limit else 0.0


class BindFailed(OSError):
    """open_socket's failure: the OSError's errno and text (args as they were, so str() and
    strerror read the same), plus which configured interface it was for (None: the relay socket)
    so the caller's error can name the config key."""

    interface: str | None = None


def open_socket(
    port: int, interface: str | None, address: str = "0.0.0.0", processes: int = 1, process: int = 0
) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if processes > 1:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # see "Several processes" above
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    # Room for a burst (a rack powering on: a few thousand DISCOVERs) but not for a backlog of
    # seconds under sustained overload (see the module doc).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    try:
        if interface:
            # Before bind: the device-bound socket then owns port 67 on this device only.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((address, port))
        if processes > 1:
            share_by_mac(sock, processes, process)
    except OSError as exc:
        sock.close()
        failed = BindFailed(*exc.args)
        failed.interface = interface
        raise failed from exc
    sock.setblocking(False)  # workers wait in poll(), see DhcpServer._serve
    return sock


class DhcpServer:
    """Worker threads per socket, each receiving, running `handler` and replying from that socket."""

    def __init__(
        self,
        interfaces: Sequence[str],
        relay_socket: bool,
        port: int,
        handler: Handler,
        workers: int = 1,
        address: str = "0.0.0.0",
        processes: int = 1,
        process: int = 0,
    ):
        self.interfaces = list(interfaces)
        self.relay_socket = relay_socket
        self.port = port
        self.handler = handler
        self.workers = workers
        self.address = address
        self.processes = processes  # the SO_REUSEPORT group's size (see "Several processes")
        self.process = process  # which one this is
        self._stop = threading.Event()
        self._sockets: list[tuple[str | None, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.malformed = 0  # packets that broke a protocol rule (MalformedPacket), each logged once
        self.errors = 0  # packets whose handling failed with any other exception: bugs, logged with a traceback

    def start(self) -> None:
        try:
            group = (self.address, self.processes, self.process)
            for device in self.interfaces:
                self._sockets.append((device, open_socket(self.port, device, *group)))
            if self.relay_socket:
                self._sockets.append((None, open_socket(self.port, None, *group)))
        except OSError:
            self._close_sockets()
            raise
        for ifname, sock in self._sockets:
            for i in range(self.workers):
                thread = threading.Thread(
                    target=self._serve, args=(ifname, sock), daemon=True, name=f"dhcp-{ifname or 'relay'}-{i}"
                )
                thread.start()
                self._threads.append(thread)
            event(
                log,
                "listening",
                service="dhcp",
                interface=ifname or "(relays)",
                port=sock.getsockname()[1],
                **({"process": self.process} if self.processes > 1 else {}),
            )

    @property
    def bound(self) -> list[tuple[str | None, int]]:
        """(interface, port) of every open socket; port 0 in the config means the kernel chose."""
        return [(ifname, sock.getsockname()[1]) for ifname, sock in self._sockets]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()
        self._close_sockets()

    def _close_sockets(self) -> None:
        for _ifname, sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def _serve(self, ifname: str | None, sock: socket.socket) -> None:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        taken = 0
        while not self._stop.is_set():
            # A batch: decide every datagram waiting (up to BATCH), sending what needs no disk at
            # once, then make the batch's leases durable with one flush and send its ACKs (see
            # "Batches" in the module doc). After a full batch more may be waiting, and how much
            # tells the handler whether it is behind; after a short one the socket was empty a
            # moment ago (no system call).
            backlog = receive_backlog(sock) if taken == BATCH else 0.0
            taken = 0
            deferred: list[tuple[Arrival, bytes, Deferred]] = []
            while taken < BATCH:
                try:
                    raw, peer = sock.recvfrom(RECV_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if self._stop.is_set():
                        return
                    event(log, "dhcp.recv_failed", logging.WARNING, interface=ifname or "(relays)", error=str(exc))
                    time.sleep(0.05)
                    break
                taken += 1
                waiting = self._handle(ifname, sock, raw, peer, backlog)
                if waiting is not None:
                    deferred.append(waiting)
            for arrival, raw, later in deferred:
                self._finish(sock, arrival, raw, later)
            if taken < BATCH:
                poller.poll(500)  # wake to notice stop()

    def _handle(
        self, ifname: str | None, sock: socket.socket, raw: bytes, peer: tuple[str, int], backlog: float
    ) -> tuple[Arrival, bytes, Deferred] | None:
        """Decide on one datagram and reply now; a reply that must wait for its lease to be
        durable comes back as (arrival, raw, Deferred) for the end of the batch."""
        arrival = Arrival(ifname, peer, time.monotonic(), backlog)
        try:
            out = self.handler(raw, arrival)
        except MalformedPacket as exc:  # the client's fault (DESIGN.md rule 5): one line, dropped
            with self._lock:
                self.malformed += 1
            event(
                log,
                "dhcp.dropped",
                logging.WARNING,
                interface=ifname or "(relays)",
                error=str(exc)[:200],
                **describe(raw),
            )
            return None
        except Exception:  # noqa: BLE001 - anything else is a bug of ours: its traceback, counted apart
            with self._lock:
                self.errors += 1
            failure(log, "dhcp.handler_failed", interface=ifname or "(relays)", **describe(raw))
            return None
        if isinstance(out, Outgoing):
            self.send(sock, arrival, out)
            return None
        if out is None:
            return None
        return arrival, raw, out

    def _finish(self, sock: socket.socket, arrival: Arrival, raw: bytes, deferred: Deferred) -> None:
        try:
            out = deferred.finish(deferred.durable.result())
        except Exception as exc:  # the commit failed: no ACK may go out (durable before acknowledged)
            event(
                log,
                "dhcp.commit_failed",
                logging.ERROR,
                interface=arrival.interface or "(relays)",
                error=str(exc)[:200],
                **describe(raw),
            )
            return
        if out is not None:
            self.send(sock, arrival, out)

    def send(self, sock: socket.socket, arrival: Arrival, out: Outgoing) -> None:
        address = out.address
        if out.hwaddr is not None and arrival.interface:
            if not set_neighbour(sock, arrival.interface, address, out.hwaddr):
                address = IPv4Address("255.255.255.255")  # see the module doc: broadcast instead
        try:
            # Never wait for room in the send buffer (the socket is non-blocking): under a broadcast
            # flood (the fuzz test: 100k packets) workers stalled there while the receive buffer
            # overflowed. A reply that cannot be queued now is lost like any UDP datagram; the
            # client retries.
            sock.sendto(out.payload, (_text(address), out.port))
        except OSError as exc:
            event(
                log,
                "dhcp.send_failed",
                logging.WARNING,
                interface=arrival.interface or "(relays)",
                to=f"{address}:{out.port}",
                error=str(exc),
            )
