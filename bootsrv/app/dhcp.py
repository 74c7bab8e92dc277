"""`bootsrv serve`'s DHCP service: the socket loop (server.py) over the engine, from the config.

Which sockets: one per interface some network names, plus the relay socket when some network
lists relays; a config that names neither gets no DHCP service at all (the embedded default).
The handler decodes, asks the engine, encodes and turns the engine's routing decision into an
`Outgoing`. A packet that breaks a protocol rule raises MalformedPacket: the loop logs one line
(MAC, xid), counts it as `malformed` and drops it; any other exception is a bug, logged with its
traceback and counted as `errors` (both in the `dhcp.stopped` line); the loop answers on.
"""

from __future__ import annotations

import fcntl
import functools
import gc
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from bootsrv.app.dhcp_processes import Processes
from bootsrv.app.discovery import DiscoveryRecorder, discovery_recorder
from bootsrv.app.wiring import Wiring
from bootsrv.config import Config
from bootsrv.dhcp.server import Arrival, Deferred, DhcpServer, Handler, Outgoing
from bootsrv.errors import ConfigError
from bootsrv.log import event

log = logging.getLogger("bootsrv.dhcp")

SIOCGIFADDR = 0x8915  # linux/sockios.h
# DISCOVERs are dropped while the socket's receive buffer is fuller than this (load shedding, see
# engine_handler). The kernel drops datagrams at random once it is full, and a lost DISCOVER or
# REQUEST wastes the work done for the other half of its exchange. Half of the 1 MB buffer is
# about 0.15 s of traffic at 2,000 DORA/s: a disk stall that short sheds nothing. Measured, one
# process at 8,000 exchanges/s offered (about twice what it completes): see docs/dhcp.md.
SHED_BACKLOG = 0.5


def interface_address(ifname: str) -> IPv4Address | None:
    """The primary IPv4 address of `ifname` in this namespace, or None (no address, no device)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            res = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", ifname.encode()[:15]))
        except OSError:
            return None
    return IPv4Address(res[20:24])


def served_interfaces(config: Config) -> list[str]:
    return [net.interface for net in config.networks if net.interface]


def relayed(config: Config) -> bool:
    return any(net.relays for net in config.networks)


class DhcpService:
    """DHCP for one process. Process 0 (`bootsrv serve`) also runs the other dhcp.processes - 1
    (bootsrv/app/dhcp_processes.py), each of which runs a DhcpService of its own number."""

    name = "dhcp"

    def __init__(
        self,
        config: Config,
        handler_factory: Callable[[], Handler],
        workers: int | None = None,
        process: int = 0,
        recorder: DiscoveryRecorder | None = None,
    ):
        self.config = config
        self.handler_factory = handler_factory
        # Records what this process' handler reports (bootsrv.app.discovery); DHCP processes
        # other than 0 only: process 0's recorder is a service of its own.
        self.recorder = recorder
        # One receiving thread per socket (see server.py "Threads"), more when a handler blocks
        # on ICMP echoes.
        self.workers = workers or (8 if config.dhcp.icmp_check else 1)
        self.process = process
        self.server: DhcpServer | None = None
        self.others = None  # process 0 with dhcp.processes > 1: dhcp_processes.Processes

    def start(self) -> None:
        for ifname in served_interfaces(self.config) if self.process == 0 else ():
            if interface_address(ifname) is None:
                # Still served (the socket binds to the device), but replies need a source address
                # and option 54 needs one of ours: say so once instead of failing every packet.
                event(log, "dhcp.interface_without_address", logging.WARNING, interface=ifname)
        self.handler = self.handler_factory()
        if self.recorder is not None:
            self.recorder.start()
        # The lease tables are large, long-lived object graphs: move what exists now out of the
        # collector's way and collect the young generation less often. Every DORA allocates a few
        # hundred objects, so the default threshold (700) ran a collection every few exchanges and
        # full collections walked every lease (a modest gain under perfdhcp, within the noise).
        gc.freeze()
        gc.set_threshold(50_000, 100, 100)
        self.server = DhcpServer(
            served_interfaces(self.config),
            relayed(self.config),
            self.config.dhcp.port,
            self.handler,
            workers=self.workers,
            processes=self.config.dhcp.processes,
            process=self.process,
        )
        try:
            self.server.start()
        except OSError as exc:
            self._stop_recorder()
            raise socket_error(self.config, exc) from None
        if self.process == 0 and self.config.dhcp.processes > 1:
            self.others = Processes(self.config)
            try:
                self.others.start()
            except BaseException:
                self.server.stop()
                self._stop_recorder()
                raise

    def stop(self) -> None:
        if self.others is not None:
            self.others.stop()
        if self.server is not None:
            self.server.stop()
            shed = getattr(self.handler, "shed", [0])[0]
            event(
                log,
                "dhcp.stopped",
                malformed=self.server.malformed,
                errors=self.server.errors,
                shed=shed,
                **({"process": self.process} if self.config.dhcp.processes > 1 else {}),
            )
        self._stop_recorder()  # after the loop: it records what the last packets reported

    def _stop_recorder(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
            self.recorder = None


def socket_error(config: Config, exc: OSError) -> ConfigError:
    """A bind failure as the config key that asked for it (a missing device is a config mistake)."""
    device = getattr(exc, "interface", None)
    for i, net in enumerate(config.networks):
        if device and net.interface == device:
            return ConfigError("config", f"networks[{i}].interface", f"cannot serve {device!r}: {exc.strerror or exc}")
    return ConfigError("config", "dhcp.port", f"cannot bind UDP port {config.dhcp.port}: {exc.strerror or exc}")


def dhcp_services(wiring: Wiring) -> list[DhcpService]:
    cfg = wiring.config
    if not cfg.dhcp.enabled:
        return []
    if not served_interfaces(cfg) and not relayed(cfg):
        event(log, "dhcp.nothing_to_serve", reason="no network names an interface or a relay")
        return []
    recorder = None
    # Process 0's recorder is a service of its own (bootsrv.app.discovery: HTTP reports there
    # too); each other DHCP process records what its own handler reports.
    if cfg.boot.unknown_machines == "discover" and wiring.dhcp_process != 0:
        recorder = discovery_recorder(wiring)
    return [DhcpService(cfg, lambda: engine_handler(wiring), process=wiring.dhcp_process, recorder=recorder)]


def engine_handler(wiring: Wiring) -> Handler:
    """The handler over the DHCP engine and the lease store of this process: decode, decide, encode.
    An ACK comes back Deferred until its lease is durable (see server.py). The machine registry is
    only read here; what the engine saw of unknown netboot clients goes to `wiring.sightings`,
    which the discovery recorder writes off the packet path (bootsrv.app.discovery)."""
    from bootsrv.dhcp import packet as P
    from bootsrv.dhcp.engine import Engine, ServerAddresses
    from bootsrv.dhcp.packet import DISCOVER as DISCOVER_TYPE
    from bootsrv.dhcp.packet import REQUEST as REQUEST_TYPE
    from bootsrv.dhcp.packet import decode, encode, looks_like_discover
    from bootsrv.machines.model import RegistryNetboot

    cfg = wiring.config
    engine = Engine(
        cfg,
        wiring.leases,
        RegistryNetboot(wiring.machines),
        ServerAddresses(cfg, cached_interface_address()),
        probe=icmp_echo,
    )
    sightings = wiring.sightings
    clock = wiring.clock
    debug = functools.partial(log.isEnabledFor, logging.DEBUG)
    shed = [0]
    last_request = [0.0]  # Arrival.received of the last REQUEST

    def handle(raw: bytes, arrival: Arrival):
        # Behind, with exchanges to finish: the receive buffer is filling while REQUESTs are
        # coming in. DISCOVERs are dropped then and the time goes to the REQUESTs, which complete
        # exchanges (an OFFER costs as much as an ACK and completes nothing); the client
        # retransmits in ~4 s (RFC 2131 4.1). With no REQUEST in flight nothing is shed, so a
        # server stalled by a busy machine answers late instead of not at all.
        behind = arrival.backlog > SHED_BACKLOG and arrival.received - last_request[0] < 1.0
        if behind and looks_like_discover(raw):
            # Before decoding: under a storm most datagrams are shed DISCOVERs (2 processes at
            # 20,000 offered/s shed ~18,000/s), and the handler drops one in 0.4 us instead of
            # the 2.3 us a decode took (~3 % of a core at that rate). One that would not have
            # decoded is dropped all the same, only not counted as malformed.
            shed[0] += 1
            return None
        request = decode(raw)
        mtype = request.message_type
        if mtype == REQUEST_TYPE:
            last_request[0] = arrival.received
        elif mtype == DISCOVER_TYPE and behind:  # option 53 not first: found by the decode
            shed[0] += 1
            return None
        reply = engine.decide(request, arrival.interface, clock())
        if reply is None:
            return None
        if reply.sighting is not None:
            sightings.saw(reply.sighting)  # recorded later, in a batch: no registry write here
        if debug():  # one line per reply at --log-level debug (at thousands a second, not by default)
            event(
                log,
                "dhcp.reply",
                logging.DEBUG,
                type=P.MESSAGE_NAMES.get(reply.message_type, reply.message_type),
                mac=request.chaddr[:6].hex(":"),
                ip=str(reply.packet.yiaddr),
                to=f"{reply.to.address}:{reply.to.port}",
                file=reply.packet.file.rstrip(b"\0").decode("ascii", "replace") or "-",
                hostname=request.text(P.HOSTNAME) or "-",  # option 12, as the client sent it (bootsrv.log escapes)
            )
        if reply.durable is None:
            return Outgoing(encode(reply.packet, reply.max_size), reply.to.address, reply.to.port, reply.to.hwaddr)

        def finish(stored) -> Outgoing:  # encoded once durable: the stored record may complete the ACK
            return Outgoing(
                encode(reply.settled(stored), reply.max_size), reply.to.address, reply.to.port, reply.to.hwaddr
            )

        return Deferred(reply.durable, finish)

    handle.shed = shed  # DISCOVERs dropped while behind (for tests and stats)
    return handle


ICMP_TIMEOUT = 0.5  # ISC dhcpd waits 1 s; a host on the segment answers within milliseconds


def icmp_echo(ip: IPv4Address, timeout: float = ICMP_TIMEOUT) -> bool:
    """True when `ip` answers an ICMP echo within `timeout` (dhcp.icmp_check; raw socket: root)."""
    ident = (threading.get_ident() ^ int(time.monotonic() * 1000)) & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"bootsrv-dhcp-probe"
    packet = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError as exc:
        event(log, "dhcp.icmp_unavailable", logging.WARNING, error=str(exc))
        return False
    with sock:
        sock.sendto(packet, (str(ip), 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (src, _port) = sock.recvfrom(1500)
            except (TimeoutError, OSError):
                return False
            header = (data[0] & 0x0F) * 4  # a raw ICMP socket hands us the IP header too
            if (
                src == str(ip)
                and len(data) >= header + 8
                and data[header] == 0
                and struct.unpack_from("!H", data, header + 4)[0] == ident
            ):
                return True
    return False


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def cached_interface_address(ttl: float = 5.0) -> Callable[[str], IPv4Address | None]:
    """`interface_address` re-read at most every `ttl` seconds (one ioctl per packet costs more
    than deciding a DISCOVER; an address change is seen within ttl)."""
    cache: dict[str, tuple[float, IPv4Address | None]] = {}

    def lookup(ifname: str) -> IPv4Address | None:
        now = time.monotonic()
        hit = cache.get(ifname)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        addr = interface_address(ifname)
        cache[ifname] = (now, addr)
        return addr

    return lookup


__all__ = ["Arrival", "DhcpService", "Outgoing", "dhcp_services", "engine_handler", "interface_address"]
