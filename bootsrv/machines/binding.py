"""Who may speak for a machine on the boot network: a client at an address bootsrv gave it.

PXE has no credential of its own: a machine is known by its MAC, and any client of the segment
can write any MAC into a URL (/boot/<mac>.ipxe) or a callback body. What such a client cannot
claim for free is a source address: the boot script, the answer file and the enrollment callback
all come over TCP, whose handshake means the client receives at the address it speaks from. So
the install boot and everything after it are bound to the addresses bootsrv itself knows for the
machine (docs/security.md has the whole trust model):

- its admin-declared addresses (`Machine.addresses`, from `machine add --address`), which
  bootsrv.machines.addressbook also binds in the lease store as MANUAL+PERMANENT records;
- what the shared lease store holds for its MAC's client id (type 1 + MAC, RFC 2132 9.14: what
  iPXE, udhcpc and d-i's dhclient identify by): a manual binding, or the live lease that
  bootsrv's DHCP acknowledged (`MachineAddresses`, over the store by `LeaseAddresses`).

A machine due for install whose address bootsrv does not know gets no install boot at all (give
it one: DHCP from bootsrv, or `machine add --address`). `check_client` is the rule, pure over an
`Identity`, the value that says what bootsrv knows of a machine; enrollment checks the
installer's facts against the same value (bootsrv.machines.enrollment.check_claims).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from bootsrv.errors import Forbidden
from bootsrv.leases import LeaseStore, client_id_of_mac


@dataclass(frozen=True)
class Identity:
    """What bootsrv itself knows of one machine, against which anything said for it is checked."""

    mac: str
    names: frozenset[str]  # its hostname and FQDN (the FQDN by its profile's site domain)
    addresses: frozenset[str]  # IPv4: declared, bound or leased to its MAC
    hypervisor: str | None = None  # its profile's ("xen" | "kvm"); None when the profile is not at hand


class MachineAddresses(Protocol):
    def addresses(self, mac: str, now: float) -> frozenset[str]:
        """The IPv4 addresses the lease store gives `mac` now: its manual bindings and live leases."""
        ...


class MemoryAddresses:
    """MachineAddresses for tests: MAC -> addresses, as given."""

    def __init__(self, by_mac: Mapping[str, Iterable[str]] | None = None):
        self.by_mac = {mac: frozenset(ips) for mac, ips in (by_mac or {}).items()}

    def addresses(self, mac: str, now: float) -> frozenset[str]:
        return self.by_mac.get(mac, frozenset())


class LeaseAddresses:
    """MachineAddresses over the shared lease store: on each network, the record that speaks for
    the MAC's client id (LeaseStore.find: a manual binding first, else the live lease), if it is
    a binding or still live. An expired lease, an offer never taken up or a declined address does
    not count: the client no longer holds it."""

    def __init__(self, store: LeaseStore):
        self.store = store

    def addresses(self, mac: str, now: float) -> frozenset[str]:
        client = client_id_of_mac(mac)
        found = set()
        for network in self.store.networks():
            record = self.store.find(network, client, now)
            if record is not None and not record.unusable and (record.manual or record.active(now)):
                found.add(str(record.ip))
        return frozenset(found)


class NotTheMachine(Forbidden):
    """A request for a machine from an address bootsrv did not give it (HTTP 403)."""

    def __init__(self, field: str, rule: str):
        self.field, self.rule = field, rule
        super().__init__(f"{field}: {rule}")


def client_address(client: str | None) -> str | None:
    """The request's source as dotted IPv4, or None. A dual-stack socket reports an IPv4 peer as
    ::ffff:a.b.c.d (RFC 4291 2.5.5.2); any other IPv6 peer has no IPv4 address to compare."""
    if not client:
        return None
    try:
        ip = ipaddress.ip_address(client.strip())
    except ValueError:
        return None
    v4 = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip
    return None if v4 is None else str(v4)


def check_client(identity: Identity, client: str | None, what: str) -> None:
    """Raise NotTheMachine unless `client` (the request's source address) is one of the
    machine's. `what` names what was asked ("the install boot", "enrollment"). The refusal
    echoes the client's own address but never the machine's: an anonymous client learns
    nothing about which address to take."""
    address = client_address(client)
    if not identity.addresses:
        raise NotTheMachine(
            "address",
            f"{what} of machine {identity.mac} is given only to an address bootsrv leased or bound to it,"
            " and it has none: let it take a lease from bootsrv's DHCP, or give it one"
            " (`bootsrv machine add --address`)",
        )
    if address is None or address not in identity.addresses:
        raise NotTheMachine(
            "address",
            f"{what} of machine {identity.mac} is given only to an address bootsrv leased or bound to it;"
            f" this request came from {address or 'an address that is not IPv4'}",
        )
