"""The data the DNS answers from: zones, their apex records and the host names from the lease store.

Pure: `build_zones(config, hosts, serial)` turns the config and (hostname, address, network) triples
into an immutable `ZoneData`; no sockets, no clock, no store. The server rebuilds it when stale.

Forward zones are `config.dns.zones`. Reverse zones are derived from the networks' subnets on
octet boundaries (RFC 1035 3.5): a /24 gives `3.2.1.in-addr.arpa`, a /16 `2.1.in-addr.arpa`; a
prefix between boundaries gives every zone of the next longer boundary inside it (a /23 gives two
/24 zones) and a prefix longer than /24 gives its enclosing /24, because we are the authority for
these addresses and need no RFC 2317 delegation from a parent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from bootsrv.config import Config

# RFC 1123 2.1 host names: letters, digits, hyphen; labels of 1..63 characters, 253 in all.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# At most this many reverse zones per subnet (a /17 already gives 128 /24 zones).
_MAX_REVERSE_ZONES = 256


@dataclass(frozen=True)
class Host:
    """One name to publish: what a lease-store record with a hostname becomes."""

    hostname: str
    ip: IPv4Address
    network: str | None = None


@dataclass(frozen=True)
class Apex:
    """The SOA and NS of one zone (RFC 1035 3.3.13 / 3.3.11)."""

    origin: str  # lower case, no trailing dot
    mname: str  # primary name server, FQDN without trailing dot
    rname: str  # responsible mailbox as a domain name (hostmaster.<zone>)
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int  # RFC 2308: the negative-caching TTL


@dataclass(frozen=True)
class ZoneData:
    apexes: dict[str, Apex]  # origin -> apex, forward and reverse zones
    ns_names: tuple[str, ...]  # NS targets at every apex
    addresses: dict[str, tuple[IPv4Address, ...]]  # fqdn -> A records
    pointers: dict[str, tuple[str, ...]]  # x.x.x.x.in-addr.arpa -> fqdns (PTR)
    ttl: int
    # Every owner name and its ancestors inside its zone: an empty non-terminal exists (NODATA,
    # not NXDOMAIN; RFC 8020).
    nodes: frozenset[str] = field(default_factory=frozenset)

    def zone_of_labels(self, labels: tuple[bytes, ...]) -> Apex | None:
        """Like zone_of, on wire labels (lower case): a label may itself contain a dot, which
        the text form cannot show, so zone membership is decided label by label."""
        best = None
        for origin, apex in self.apexes.items():
            tail = tuple(part.encode() for part in origin.split("."))
            if labels[len(labels) - len(tail) :] == tail and len(labels) >= len(tail):
                if best is None or len(origin) > len(best.origin):
                    best = apex
        return best

    def zone_of(self, name: str) -> Apex | None:
        """The most specific of our zones containing `name` (lower case, no trailing dot)."""
        best = None
        for origin, apex in self.apexes.items():
            if name == origin or name.endswith("." + origin):
                if best is None or len(origin) > len(best.origin):
                    best = apex
        return best


def normalize(name: str) -> str:
    return name.strip().rstrip(".").lower()


def valid_hostname(name: str) -> bool:
    labels = name.split(".")
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in labels)


def reverse_name(ip: IPv4Address) -> str:
    return ".".join(reversed(str(ip).split("."))) + ".in-addr.arpa"


def reverse_zones(subnet: IPv4Network) -> list[str]:
    """The in-addr.arpa zones that cover `subnet` (see the module doc for the rounding)."""
    boundary = min(24, max(8, -(-subnet.prefixlen // 8) * 8))
    if subnet.prefixlen > boundary:
        subnet = subnet.supernet(new_prefix=boundary)
    parts = list(subnet.subnets(new_prefix=boundary))[:_MAX_REVERSE_ZONES]
    zones = []
    for part in parts:
        octets = str(part.network_address).split(".")[: boundary // 8]
        zones.append(".".join(reversed(octets)) + ".in-addr.arpa")
    return zones


def qualify(hostname: str, network_domain: str, forward: list[str]) -> str | None:
    """The FQDN a store hostname is published under, or None when it fits no zone of ours.

    A name that already ends in one of our zones is taken as is; a short name ("vm-host1") goes
    into its network's domain when that is one of our zones (or inside one), else into the first zone.
    """
    name = normalize(hostname)
    if not name or not valid_hostname(name):
        return None
    for zone in forward:
        if name == zone or name.endswith("." + zone):
            return name
    domain = normalize(network_domain)
    if domain and any(domain == z or domain.endswith("." + z) for z in forward):
        fqdn = f"{name}.{domain}"
    elif forward:
        fqdn = f"{name}.{forward[0]}"
    else:
        return None
    return fqdn if valid_hostname(fqdn) else None


def build_zones(config: Config, hosts: Iterable[Host], serial: int) -> ZoneData:
    dns = config.dns
    forward = [normalize(z) for z in dns.zones if normalize(z)]
    reverse: list[str] = []
    for net in config.networks:
        for zone in reverse_zones(net.subnet):
            if zone not in reverse:
                reverse.append(zone)
    domains = {net.name: net.domain for net in config.networks}

    addresses: dict[str, set[IPv4Address]] = {}
    pointers: dict[str, set[str]] = {}
    for host in hosts:
        fqdn = qualify(host.hostname, domains.get(host.network or "", ""), forward)
        if fqdn is None:
            continue
        addresses.setdefault(fqdn, set()).add(host.ip)
        ptr = reverse_name(host.ip)
        if any(ptr.endswith("." + z) for z in reverse):
            pointers.setdefault(ptr, set()).add(fqdn)

    # The NS target: the server's own name, qualified into the first forward zone. It gets an A
    # record (glue) only when the DNS listens on a routable address; a loopback or wildcard
    # address would be a lie to every other host.
    server = normalize(config.server.name)
    ns_name = server if "." in server or not forward else f"{server}.{forward[0]}"
    listen = dns.address
    if not listen.is_loopback and not listen.is_unspecified and ns_name not in addresses:
        if any(ns_name == z or ns_name.endswith("." + z) for z in forward):
            addresses[ns_name] = {listen}

    minimum = min(dns.ttl, 300) or 1
    apexes = {
        origin: Apex(
            origin,
            ns_name,
            f"hostmaster.{forward[0] if forward else origin}",
            serial % 2**32,
            refresh=3600,
            retry=600,
            expire=86400 * 7,
            minimum=minimum,
        )
        for origin in forward + reverse
    }
    nodes: set[str] = set(apexes)
    for owner in list(addresses) + list(pointers):
        apex = None
        for origin in apexes:
            if owner == origin or owner.endswith("." + origin):
                if apex is None or len(origin) > len(apex):
                    apex = origin
        labels = owner.split(".")
        for i in range(len(labels)):
            node = ".".join(labels[i:])
            nodes.add(node)
            if node == apex:
                break
    return ZoneData(
        apexes=apexes,
        ns_names=(ns_name,),
        addresses={k: tuple(sorted(v)) for k, v in addresses.items()},
        pointers={k: tuple(sorted(v)) for k, v in pointers.items()},
        ttl=dns.ttl,
        nodes=frozenset(nodes),
    )
