"""The DHCP engine: a request, the store, the config and the time in; a reply and where it goes out.

No sockets. `Engine.decide(packet, arrival, now)` returns a `Reply` (the packet, its destination
per RFC 2131 4.1, for an ACK the pending durable commit, and for a netboot client the registry
did not know the `Sighting` to record) or None (stay silent). The lease store is the only state
it writes; its writes are compare-and-swap, so two engines on one store (the pair) never hand
out one address twice. The machine registry is only read (`KnownMachines`): recording what was
seen is the caller's, off the packet path (bootsrv.dhcp.pxe).

Which network. A relayed request (giaddr set) belongs to the network that lists that relay; a
direct one to the network of the interface it arrived on. A unicast RENEW from a client behind a
relay arrives without giaddr on whatever socket routing picks: it belongs to the relayed network
whose subnet holds ciaddr. Anything else is not ours and is never answered: a server must not
answer on a segment it was not configured for.

States (RFC 2131 4.3.2): SELECTING (REQUEST with server id 54: ours, or silence: the client chose
another server, maybe our peer); INIT-REBOOT (no 54, requested address 50, ciaddr 0: NAK when the
address is on the wrong subnet or the client's lease is elsewhere; a lease another server owns is
left to that server); RENEWING/REBINDING (ciaddr set: the socket cannot tell unicast from
broadcast, so both are one case: extend the client's lease).

The pair (Solaris OWNER_IP). Each server allocates only from ranges its owner_ips own. A lease the
other server owns is answered (offer, renew, rebind) only once the client's `secs` reaches
`server.secondary_timeout` (Solaris in.dhcpd -t): the owner had that long to answer, so a live
peer keeps its clients and a dead one's are served by the survivor.

Authoritative for our own addresses: a REQUEST (INIT-REBOOT or RENEW) for an address nobody holds,
that this server lends, is ACKed (as dnsmasq --dhcp-authoritative and Kea do) instead of leaving
the client to time out into DISCOVER; RFC 2131 says "remain silent" only for a server that has no
record, and the shared store is the record.

Durable before acknowledged: an ACK's lease goes to `store.ack_pending`, which returns once the
line is written; the reply is handed to the socket loop with that Pending and goes out only once
the lease is fsync'ed (the loop makes a whole batch durable with one flush).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import NamedTuple

from bootsrv.config import Config, NetworkSection
from bootsrv.dhcp import packet as P
from bootsrv.dhcp.options import LEASE_OPTIONS, Layers, lease_times, ordered
from bootsrv.dhcp.packet import Packet, reply_to
from bootsrv.dhcp.pxe import FORCED, KnownMachines, Sighting, boot_reply, classify, netboot_action
from bootsrv.leases import AddressTaken, LeaseStore, Pending, PoolExhausted, Record, client_id_of_mac
from bootsrv.leases.rules import client_id_rule
from bootsrv.log import event

log = logging.getLogger("bootsrv.dhcp")

SERVER_PORT, CLIENT_PORT = 67, 68
BROADCAST_ADDRESS = IPv4Address("255.255.255.255")
ZERO = IPv4Address(0)
INFINITE = 0xFFFFFFFF  # RFC 2132 9.2: a lease time of all ones never expires
_INFINITE = struct.pack("!I", INFINITE)
RELEASED_HINTS = 65536
ICMP_ATTEMPTS = 4  # addresses probed per DISCOVER before giving up (dhcp.icmp_check)


class Destination(NamedTuple):  # one per reply: a NamedTuple is cheaper to make than a frozen dataclass
    """Where a reply goes (RFC 2131 4.1); `hwaddr` asks the loop for a neighbour entry first."""

    address: IPv4Address
    port: int
    hwaddr: bytes | None = None


@dataclass
class Reply:
    packet: Packet
    to: Destination
    max_size: int
    durable: Pending | None = None  # an ACK: send once this is durable (the lease is on disk)
    sighting: Sighting | None = None  # a netboot client the registry did not know: for the caller to record

    @property
    def message_type(self) -> int | None:
        return self.packet.message_type

    def settled(self, stored: Record) -> Packet:
        """The packet to send once `durable` resolved to `stored` (the record the commit wrote):
        a permanent binding (MANUAL) gets its infinite lease here, as only the stored record
        tells (the engine skips reading it when no macros are configured, see `Engine._ack`)."""
        if stored.permanent and self.packet.options.get(P.LEASE_TIME) != _INFINITE:
            self.packet.options = {
                code: _INFINITE if code == P.LEASE_TIME else value
                for code, value in self.packet.options.items()
                if code not in (P.RENEWAL_TIME, P.REBINDING_TIME)
            }
        return self.packet


class ServerAddresses:
    """Our address on each network (option 54 and siaddr): the served interface's address, or for
    a network served only through relays the owner_ip inside its subnet, else the first owner_ip
    (the address relays send to)."""

    def __init__(self, config: Config, interface_address: Callable[[str], IPv4Address | None]):
        self.config = config
        self.interface_address = interface_address

    def __call__(self, net: NetworkSection) -> IPv4Address | None:
        if net.interface:
            return self.interface_address(net.interface)
        owners = self.config.server.owner_ips
        return next((ip for ip in owners if ip in net.subnet), owners[0])


# One message type's handler (Engine.discover, .request, ...): (engine, request, its network, our
# address there, the client id, now) -> the reply, if any.
Handler = Callable[["Engine", Packet, NetworkSection, IPv4Address, str, float], "Reply | None"]


class Engine:
    def __init__(
        self,
        config: Config,
        store: LeaseStore,
        machines: KnownMachines,
        server_address: Callable[[NetworkSection], IPv4Address | None],
        layers: Layers | None = None,
        probe: Callable[[IPv4Address], bool] | None = None,
    ):
        self.config = config
        self.store = store
        self.machines = machines
        self.server_address = server_address
        self.layers = layers or Layers.from_config(config)
        self.by_interface = {net.interface: net for net in config.networks if net.interface}
        self.by_relay = {relay: net for net in config.networks for relay in net.relays}
        self.relayed = [net for net in config.networks if net.relays]
        self.hold = config.dhcp.offer_hold
        # (network, client id) -> the address it released. The store forgets the client of a
        # released address; RFC 2131 4.3.1 still prefers offering it "the client's previous address
        # as recorded in the client's (now expired or released) binding". A hint only: the store
        # decides whether the address is still free. Bounded; lost on restart (then: any address).
        self.released: dict[tuple[str, str], IPv4Address] = {}
        self.secondary_timeout = config.server.secondary_timeout
        # dhcp.icmp_check: `probe(ip)` is True when something answers an ICMP echo at ip.
        self.probe = probe if config.dhcp.icmp_check else None

    # ---- entry point ---------------------------------------------------------------------------
    def decide(self, req: Packet, interface: str | None, now: float) -> Reply | None:
        if req.op != P.BOOTREQUEST or not req.dhcp:
            return None  # replies from other servers; plain BOOTP is not served
        net = self.network_of(req, interface)
        if net is None:
            return None
        server = self.server_address(net)
        if server is None:
            event(log, "dhcp.no_server_address", logging.WARNING, network=net.name)
            return None
        mtype = req.message_type
        if mtype is None:
            return None  # a magic cookie without option 53 (RFC 2131 3: it MUST be there): not served
        handler = self._handlers.get(mtype)
        if handler is None:
            return None
        cid = client_id(req)
        if (why := client_id_rule(cid)) is not None:  # over 255 octets, or 00 (htype 0, no chaddr)
            event(log, "dhcp.no_client_id", logging.DEBUG, mac=req.mac.hex(":"), xid=f"0x{req.xid:08x}", rule=why)
            return None  # the store's record rules would refuse it (bootsrv.leases.rules)
        return handler(self, req, net, server, cid, now)

    def network_of(self, req: Packet, interface: str | None) -> NetworkSection | None:
        if req.giaddr != ZERO:
            return self.by_relay.get(req.giaddr)  # a relay we were not told about: not ours
        net = self.by_interface.get(interface) if interface else None
        if req.ciaddr != ZERO and (net is None or req.ciaddr not in net.subnet):
            # A unicast RENEW/RELEASE/INFORM from behind a relay carries no giaddr.
            return next((n for n in self.relayed if req.ciaddr in n.subnet), None)
        return net

    # ---- messages --------------------------------------------------------------------------------
    def discover(self, req: Packet, net: NetworkSection, server: IPv4Address, cid: str, now: float) -> Reply | None:
        requested = req.address(P.REQUESTED_IP)
        if requested is None or requested not in net.subnet:
            requested = self.released.get((net.name, cid))
        held = self.store.find(net.name, cid, now) if self.probe is not None else None
        for _attempt in range(ICMP_ATTEMPTS):
            try:
                rec = self.store.offer(net.name, cid, now, self.hold, requested)
            except PoolExhausted:
                event(log, "dhcp.pool_exhausted", logging.WARNING, network=net.name, client=cid)
                return None
            if held is not None and held.ip == rec.ip and (held.manual or held.active(now)):
                break  # the client's own lease, binding or held offer: not probed again
            if not self._answers_ping(net, rec, cid, now):
                break
            requested = None
        else:
            return None
        if not self.store.owns(rec) and not self._peer_gave_up(req):
            return None  # the owner answers (see the module doc)
        return self._lease_reply(req, net, server, cid, rec, P.OFFER, now)

    def request(self, req: Packet, net: NetworkSection, server: IPv4Address, cid: str, now: float) -> Reply | None:
        chosen = req.address(P.SERVER_ID)
        requested = req.address(P.REQUESTED_IP)
        if chosen is not None:  # SELECTING
            if chosen != server or requested is None:
                return None  # the client took another server's offer (or is broken): say nothing
            if requested not in net.subnet:
                return self._nak(req, net, server, "requested address is not on this network")
            return self._ack(req, net, server, cid, requested, now)
        if req.ciaddr == ZERO:  # INIT-REBOOT
            if requested is None:
                return None
            return self._confirm(req, net, server, cid, requested, now, reboot=True)
        return self._confirm(req, net, server, cid, req.ciaddr, now, reboot=False)  # RENEWING / REBINDING

    def _confirm(
        self,
        req: Packet,
        net: NetworkSection,
        server: IPv4Address,
        cid: str,
        ip: IPv4Address,
        now: float,
        reboot: bool,
    ) -> Reply | None:
        if ip not in net.subnet:
            return self._nak(req, net, server, f"{ip} is not on network {net.name}")
        current = self.store.find(net.name, cid, now)
        at = self.store.get(net.name, ip)
        if at is not None and at.client_id and at.client_id != cid and (at.active(now) or at.unusable):
            return self._nak(req, net, server, f"{ip} is held by another client")
        if current is not None and current.ip != ip and (current.manual or current.active(now)):
            return self._nak(req, net, server, f"the client's lease is {current.ip}")
        if at is not None and at.client_id == cid and not at.unusable:
            if not self.store.owns(at):
                # INIT-REBOOT of a foreign lease is the owner's; RENEW/REBIND once the owner had its time.
                if reboot or not self._peer_gave_up(req):
                    return None
            return self._ack(req, net, server, cid, ip, now)
        if self.store.owns_address(net.name, ip):
            return self._ack(req, net, server, cid, ip, now)  # free and ours: authoritative
        return None  # not ours to decide (the peer's range, or outside every range)

    def decline(self, req: Packet, net: NetworkSection, server: IPv4Address, cid: str, now: float) -> None:
        ip = req.address(P.REQUESTED_IP)
        chosen = req.address(P.SERVER_ID)
        if ip is None or (chosen is not None and chosen != server) or ip not in net.subnet:
            return None
        # RFC 2131 4.3.3: someone else answers at that address; keep it out of service a lease time.
        if self.store.decline(net.name, ip, cid, now, net.lease_time) is not None:
            event(log, "dhcp.declined", network=net.name, ip=str(ip), client=cid)
        return None

    def release(self, req: Packet, net: NetworkSection, server: IPv4Address, cid: str, now: float) -> None:
        chosen = req.address(P.SERVER_ID)
        if req.ciaddr == ZERO or (chosen is not None and chosen != server) or req.ciaddr not in net.subnet:
            return None
        if self.store.release(net.name, req.ciaddr, cid) is not None:  # RFC 2131 4.3.4: no reply
            if len(self.released) >= RELEASED_HINTS:
                try:  # workers race here; losing the race only forgets one more hint
                    self.released.pop(next(iter(self.released)), None)
                except (RuntimeError, StopIteration):
                    pass
            self.released[(net.name, cid)] = req.ciaddr
        return None

    def inform(self, req: Packet, net: NetworkSection, server: IPv4Address, cid: str, now: float) -> Reply | None:
        # RFC 2131 4.3.5: options only, no lease, no yiaddr; sent to ciaddr (or the relay).
        if req.ciaddr == ZERO:
            return None
        values = self.layers.resolve(net.name, req.options.get(P.VENDOR_CLASS), "", cid)
        out = reply_to(req, P.ACK)
        first = {P.MESSAGE_TYPE: bytes((P.ACK,)), P.SERVER_ID: server.packed}
        out.options = ordered(first, values, req.options.get(P.PARAMETER_LIST), skip=LEASE_OPTIONS)
        return Reply(out, self._route(req, out, nak=False), req.max_size())

    _handlers: dict[int, Handler] = {}

    # ---- replies -------------------------------------------------------------------------------
    def _ack(
        self, req: Packet, net: NetworkSection, server: IPv4Address, cid: str, ip: IPv4Address, now: float
    ) -> Reply | None:
        # The record matters to the reply only through its macro (a layer) and its flags; without
        # macros configured the read is skipped (one table catch-up less per ACK: ~1/5 of the
        # store's system calls on the DORA path).
        rec = self.store.get(net.name, ip) if self.layers.macros else None
        values = self._values(req, net, rec, cid)
        lease, _ = lease_times(values)
        try:
            durable = self.store.ack_pending(net.name, ip, cid, now, lease)
        except AddressTaken as exc:
            return self._nak(req, net, server, str(exc))
        if rec is None or rec.client_id != cid:
            rec = Record(net.name, ip, cid)
        reply = self._lease_reply(req, net, server, cid, rec, P.ACK, now, values)
        reply.durable = durable  # not read: a permanent binding's lease is set by Reply.settled
        return reply

    def _values(self, req: Packet, net: NetworkSection, rec: Record | None, cid: str) -> dict[int, bytes]:
        return self.layers.resolve(net.name, req.options.get(P.VENDOR_CLASS), rec.macro if rec else "", cid)

    def _lease_reply(
        self,
        req: Packet,
        net: NetworkSection,
        server: IPv4Address,
        cid: str,
        rec: Record,
        mtype: int,
        now: float,
        values: dict[int, bytes] | None = None,
    ) -> Reply:
        if values is None:
            values = self._values(req, net, rec, cid)
        _, times = lease_times(values)
        if rec.permanent:
            times = {P.LEASE_TIME: _INFINITE}
        out = reply_to(req, mtype)
        out.yiaddr = rec.ip
        out.siaddr = server
        forced: tuple[int, ...] = ()
        sighting = None
        fw = classify(req)
        if fw is not None:
            mac = ":".join(f"{b:02x}" for b in req.mac)
            action, sighting = netboot_action(self.machines.netboot(mac), mac, fw, self.config.boot, now)
            boot = boot_reply(fw, action, mac, self.config.boot, server)
            if boot is not None:
                if boot.siaddr is not None:
                    out.siaddr, out.sname, out.file = boot.siaddr, boot.sname, boot.file
                values = {**values, **boot.options}
                forced = tuple(code for code in FORCED if code in boot.options)
        first = {P.MESSAGE_TYPE: bytes((mtype,)), P.SERVER_ID: server.packed, **times}
        out.options = ordered(first, values, req.options.get(P.PARAMETER_LIST), forced, skip=LEASE_OPTIONS)
        return Reply(out, self._route(req, out, nak=False), req.max_size(), sighting=sighting)

    def _nak(self, req: Packet, net: NetworkSection, server: IPv4Address, why: str) -> Reply:
        event(log, "dhcp.nak", network=net.name, client=client_id(req), reason=why)
        out = reply_to(req, P.NAK)
        out.options[P.SERVER_ID] = server.packed
        out.options[P.MESSAGE] = why.encode("ascii", "replace")[:255]  # RFC 2131 4.3.2: option 56 may say why
        if req.giaddr != ZERO:
            out.flags |= P.BROADCAST  # RFC 2131 4.1: the relay broadcasts a NAK to the client
        return Reply(out, self._route(req, out, nak=True), req.max_size())

    def _answers_ping(self, net: NetworkSection, rec: Record, cid: str, now: float) -> bool:
        """dhcp.icmp_check (RFC 2131 4.4.1 suggests it): before offering an address freshly taken
        from the pool, ask whether something already uses it; if so mark it UNUSABLE like a
        DECLINE (an administrator clears it) and take another. Off by default: a probe waits for
        its timeout on every free address."""
        if self.probe is None or rec.manual:
            return False
        if not self.probe(rec.ip):
            return False
        self.store.decline(net.name, rec.ip, cid, now, net.lease_time)
        event(log, "dhcp.icmp_in_use", logging.WARNING, network=net.name, ip=str(rec.ip))
        return True

    def _peer_gave_up(self, req: Packet) -> bool:
        return req.secs >= self.secondary_timeout

    @staticmethod
    def _route(req: Packet, out: Packet, nak: bool) -> Destination:
        """RFC 2131 4.1, "the server sends its reply": relay, then ciaddr, then broadcast or unicast."""
        if req.giaddr != ZERO:
            return Destination(req.giaddr, SERVER_PORT)
        if nak:
            return Destination(BROADCAST_ADDRESS, CLIENT_PORT)  # a NAK always broadcasts
        if req.ciaddr != ZERO:
            return Destination(req.ciaddr, CLIENT_PORT)
        if req.broadcast or out.yiaddr == ZERO:
            return Destination(BROADCAST_ADDRESS, CLIENT_PORT)
        return Destination(out.yiaddr, CLIENT_PORT, req.mac)


Engine._handlers = {
    P.DISCOVER: Engine.discover,
    P.REQUEST: Engine.request,
    P.DECLINE: Engine.decline,
    P.RELEASE: Engine.release,
    P.INFORM: Engine.inform,
}


def client_id(req: Packet) -> str:
    """Option 61 as upper-case hex, else hardware type + chaddr (RFC 2132 9.14; the store's key)."""
    value = req.options.get(P.CLIENT_ID)
    if value:
        return value.hex().upper()
    return client_id_of_mac(req.mac, req.htype)
