"""MAC -> address + hostname bindings of guests, and the choice of an address (pure core).

`Bindings` is the small interface assign-ip and destroy need from the shared lease store;
`MemoryBindings` is its in-process version and `bootsrv.virt.leasebind.LeaseBindings` adapts the
real store (bootsrv.leases). A guest binding is a MANUAL+PERMANENT record: DHCP hands that
address to that MAC only, forever, and DNS answers the hostname with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from bootsrv.errors import Conflict, InvalidInput, NotFound


@dataclass(frozen=True)
class Binding:
    network: str
    ip: IPv4Address
    mac: str
    hostname: str
    comment: str = ""


@dataclass(frozen=True)
class Used:
    """An address or name already taken in a network's table (a lease, a binding, a reservation)."""

    ip: IPv4Address
    client: str  # MAC or client id ("" if none)
    hostname: str


class Bindings(Protocol):
    def used(self, network: str) -> list[Used]:
        """Every record of the network that takes an address (leases of any kind)."""

    def bind(self, binding: Binding) -> None:
        """Write a MANUAL+PERMANENT record; Conflict if the address was taken meanwhile."""

    def unbind(self, network: str, mac: str) -> list[IPv4Address]:
        """Remove the MANUAL records of `mac` in `network`; returns the addresses freed."""


@dataclass(frozen=True)
class AddressPlan:
    """The parts of a [[networks]] entry that address choice needs."""

    name: str
    subnet: IPv4Network
    ranges: tuple[tuple[IPv4Address, IPv4Address], ...] = ()
    reserved: frozenset[IPv4Address] = field(default_factory=frozenset)  # router, DNS servers, servers

    @classmethod
    def from_network(cls, net, extra_reserved: Iterable[IPv4Address] = ()) -> AddressPlan:
        reserved = {*net.dns_servers, *extra_reserved}
        if net.router is not None:
            reserved.add(net.router)
        return cls(net.name, net.subnet, tuple((r.start, r.end) for r in net.ranges), frozenset(reserved))

    def candidates(self) -> Iterable[IPv4Address]:
        """The addresses bootsrv hands out on this network, lowest first: its ranges, or the whole
        subnet when it has none (network and broadcast addresses excluded, RFC 919/922)."""
        spans = self.ranges or ((self.subnet.network_address + 1, self.subnet.broadcast_address - 1),)
        for start, end in sorted(spans):
            for value in range(int(start), int(end) + 1):
                yield IPv4Address(value)


def choose_address(
    plan: AddressPlan, used: list[Used], requested: str | None = None, field_name: str = "address"
) -> IPv4Address:
    taken = {u.ip: u for u in used}
    if requested is not None:
        try:
            ip = ipaddress.IPv4Address(requested)
        except ValueError:
            raise InvalidInput(field_name, f"{requested!r} is not an IPv4 address") from None
        if ip not in plan.subnet:
            raise InvalidInput(field_name, f"{ip} is outside network {plan.name!r} ({plan.subnet})")
        if ip in (plan.subnet.network_address, plan.subnet.broadcast_address):
            raise InvalidInput(field_name, f"{ip} is the network or broadcast address of {plan.subnet}")
        if ip in plan.reserved:
            raise Conflict(f"{field_name}: {ip} is reserved on {plan.name!r} (router, DNS or server address)")
        if ip in taken:
            who = taken[ip]
            raise Conflict(
                f"{field_name}: {ip} is in use on {plan.name!r} by {who.client or '?'}"
                f"{' (' + who.hostname + ')' if who.hostname else ''}"
            )
        return ip
    for ip in plan.candidates():
        if ip not in taken and ip not in plan.reserved:
            return ip
    raise Conflict(f"{field_name}: network {plan.name!r} has no free address left in {plan.subnet}")


def check_hostname_free(hostname: str, used_by_network: dict[str, list[Used]], mac: str) -> None:
    for network, used in used_by_network.items():
        for u in used:
            if u.hostname and u.hostname.lower() == hostname.lower() and u.client != mac:
                raise Conflict(f"hostname: {hostname!r} is in use on {network!r} by {u.client or '?'} ({u.ip})")


class MemoryBindings:
    def __init__(self, used: dict[str, list[Used]] | None = None):
        self._used: dict[str, list[Used]] = {k: list(v) for k, v in (used or {}).items()}
        self.manual: list[Binding] = []

    def used(self, network: str) -> list[Used]:
        return list(self._used.get(network, []))

    def bind(self, binding: Binding) -> None:
        if any(u.ip == binding.ip for u in self._used.get(binding.network, [])):
            raise Conflict(f"address: {binding.ip} was taken meanwhile")
        self._used.setdefault(binding.network, []).append(Used(binding.ip, binding.mac, binding.hostname))
        self.manual.append(binding)

    def unbind(self, network: str, mac: str) -> list[IPv4Address]:
        freed = [b.ip for b in self.manual if b.network == network and b.mac == mac]
        if not freed:
            return []
        self.manual = [b for b in self.manual if not (b.network == network and b.mac == mac)]
        self._used[network] = [u for u in self._used.get(network, []) if u.ip not in freed]
        return freed


def require_network(plans: dict[str, AddressPlan], name: str, field_name: str = "network") -> AddressPlan:
    if name not in plans:
        raise NotFound(f"{field_name}: no network {name!r} in the config (known: {', '.join(plans) or 'none'})")
    return plans[name]
