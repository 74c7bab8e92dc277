"""Machine use cases shared by the CLI and the admin API: add, adopt, reinstall, retire, discover.

Each takes the registry (and, where addresses are involved, the `AddressBook` over the lease
store) plus plain values, validates every value with its field name before anything is written,
and returns the stored machine. No click, no Flask.

A machine's addresses on the site networks (Public, Backend, ...) are MANUAL+PERMANENT records
in the shared lease store, so bootsrv's DHCP hands the machine the same address forever and its
DNS answers the hostname; `AddressBook` is the two calls this module needs from that store.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from bootsrv.config import NetworkSection
from bootsrv.errors import Conflict, InvalidInput, NotFound
from bootsrv.machines import discovery
from bootsrv.machines.model import Event, Machine, MachineRegistry, State, require, update
from bootsrv.values import (
    normalize_guid,
    normalize_hostname,
    normalize_mac,
    normalize_profile,
    normalize_serial,
)


class AddressBook(Protocol):
    """Fixed address bindings in the lease store (MANUAL+PERMANENT records with a hostname)."""

    def bind(self, network: str, ip: str, mac: str, hostname: str) -> None:
        """Bind `ip` on `network` to `mac`; Conflict if the address is held by another client."""
        ...

    def release(self, network: str, ip: str, mac: str) -> None: ...


class MemoryAddressBook:
    """In-memory AddressBook for tests and for registries that have no lease store."""

    def __init__(self) -> None:
        self.bindings: dict[tuple[str, str], tuple[str, str]] = {}  # (network, ip) -> (mac, hostname)

    def bind(self, network: str, ip: str, mac: str, hostname: str) -> None:
        holder = self.bindings.get((network, ip))
        if holder is not None and holder[0] != mac:
            raise Conflict(f"address: {ip} on {network} is bound to {holder[0]}")
        self.bindings[(network, ip)] = (mac, hostname)

    def release(self, network: str, ip: str, mac: str) -> None:
        if self.bindings.get((network, ip), (None,))[0] == mac:
            del self.bindings[(network, ip)]


# ---------------------------------------------------------------------------------------------
# Validation of admin input


def parse_addresses(
    raw: Mapping[str, str], networks: Sequence[NetworkSection], field: str = "address"
) -> tuple[tuple[str, str], ...]:
    """{"public": "192.0.2.10"} checked against the configured networks: known network, an
    address inside its subnet that is neither the network nor the broadcast address."""
    by_name = {n.name: n for n in networks}
    out: list[tuple[str, str]] = []
    for name, text in raw.items():
        net = by_name.get(name)
        if net is None:
            known = ", ".join(sorted(by_name)) or "none configured"
            raise InvalidInput(f"{field}.{name}", f"unknown network {name!r} (networks: {known})")
        try:
            ip = ipaddress.IPv4Address(str(text).strip())
        except ValueError:
            raise InvalidInput(f"{field}.{name}", f"{text!r} is not an IPv4 address") from None
        if ip not in net.subnet:
            raise InvalidInput(f"{field}.{name}", f"{ip} is outside subnet {net.subnet} of network {name!r}")
        if ip in (net.subnet.network_address, net.subnet.broadcast_address):
            raise InvalidInput(f"{field}.{name}", f"{ip} is the network or broadcast address of {net.subnet}")
        out.append((name, str(ip)))
    return tuple(sorted(out))


def parse_address_options(options: Sequence[str], field: str = "address") -> dict[str, str]:
    """CLI form `NETWORK=IP` (repeatable) into a mapping; a network given twice is an error."""
    out: dict[str, str] = {}
    for option in options:
        name, sep, ip = option.partition("=")
        if not sep or not name or not ip:
            raise InvalidInput(field, f"{option!r} must be NETWORK=IP, e.g. public=192.0.2.10")
        if name in out:
            raise InvalidInput(f"{field}.{name}", "given twice")
        out[name] = ip
    return out


def _segment(addresses: tuple[tuple[str, str], ...], networks: Sequence[NetworkSection], given: str | None) -> str:
    if given is not None:
        known = {n.segment for n in networks if n.segment}
        if known and given not in known:
            raise InvalidInput("segment", f"{given!r} is not a segment of any network ({', '.join(sorted(known))})")
        return given
    by_name = {n.name: n for n in networks}
    for name, _ in addresses:  # the segment of the machine's networks, if they name one
        if by_name[name].segment:
            return by_name[name].segment
    return ""


def _check_unique(registry: MachineRegistry, mac: str, hostname: str, addresses: tuple[tuple[str, str], ...]) -> None:
    for other in registry.list():
        if other.mac == mac:
            continue
        if hostname and other.hostname == hostname:
            raise Conflict(f"hostname: {hostname!r} is already used by machine {other.mac}")
        for pair in addresses:
            if pair in other.addresses:
                raise Conflict(
                    f"address.{pair[0]}: {pair[1]} is already used by machine {other.mac} ({other.hostname})"
                )


def _bind_all(book: AddressBook, machine: Machine) -> None:
    done: list[tuple[str, str]] = []
    try:
        for network, ip in machine.addresses:
            book.bind(network, ip, machine.mac, machine.hostname)
            done.append((network, ip))
    except Exception:
        for network, ip in done:
            book.release(network, ip, machine.mac)
        raise


# ---------------------------------------------------------------------------------------------
# Use cases


def add(
    registry: MachineRegistry,
    book: AddressBook,
    networks: Sequence[NetworkSection],
    *,
    mac: str,
    hostname: str,
    profile: str,
    now: float,
    addresses: Mapping[str, str] | None = None,
    guid: str | None = None,
    serial: str | None = None,
    segment: str | None = None,
    comment: str = "",
    profiles: Collection[str] | None = None,
) -> Machine:
    """Register a machine for install ("new"), binding its addresses in the lease store."""
    mac = normalize_mac(mac)
    hostname = normalize_hostname(hostname)
    profile = _known_profile(profile, profiles)
    pairs = parse_addresses(addresses or {}, networks)
    machine = Machine(
        mac=mac,
        hostname=hostname,
        state=State.NEW,
        profile=profile,
        guid=normalize_guid(guid) if guid else None,
        serial=normalize_serial(serial) if serial else None,
        addresses=pairs,
        segment=_segment(pairs, networks, segment),
        comment=_comment(comment),
        created=now,
        updated=now,
    )
    existing = registry.get(mac)
    if existing is not None:
        hint = " (adopt it: `bootsrv machine adopt`)" if existing.state is State.DISCOVERED else ""
        raise Conflict(f"mac: machine {mac} already exists in state {existing.state.value!r}{hint}")
    _check_unique(registry, mac, hostname, pairs)
    stored = registry.put(machine, None)
    try:
        _bind_all(book, stored)
    except Exception:
        registry.remove(mac, stored.revision)
        raise
    return stored


def adopt(
    registry: MachineRegistry,
    book: AddressBook,
    networks: Sequence[NetworkSection],
    *,
    mac: str,
    hostname: str,
    profile: str,
    now: float,
    addresses: Mapping[str, str] | None = None,
    segment: str | None = None,
    comment: str = "",
    profiles: Collection[str] | None = None,
) -> Machine:
    """Take a discovered machine into service: it keeps what DHCP told, gains profile, name and addresses."""
    mac = normalize_mac(mac)
    hostname = normalize_hostname(hostname)
    profile = _known_profile(profile, profiles)
    pairs = parse_addresses(addresses or {}, networks)
    seg = _segment(pairs, networks, segment)
    current = require(registry, mac)
    _check_unique(registry, mac, hostname, pairs)
    adopted = current.with_event(
        Event.ADOPT,
        now,
        hostname=hostname,
        profile=profile,
        addresses=pairs,
        segment=seg,
        comment=_comment(comment) or current.comment,
    )
    stored = registry.put(adopted, current.revision)
    try:
        _bind_all(book, stored)
    except Exception:
        registry.put(dataclasses.replace(current, updated=now), stored.revision)  # back to discovered
        raise
    return stored


def reinstall(registry: MachineRegistry, mac: str, now: float) -> Machine:
    """Ask for a fresh install at the next netboot. Earlier enrollment tokens stop working."""
    return update(registry, normalize_mac(mac), lambda m: m.with_event(Event.REINSTALL, now, tokens=()))


def retire(registry: MachineRegistry, mac: str, now: float) -> Machine:
    """Out of service: boots from disk, leaves the pool. Its address bindings are kept so that
    a reinstall brings it back under the same name."""
    return update(registry, normalize_mac(mac), lambda m: m.with_event(Event.RETIRE, now, tokens=(), drained=False))


def discover(
    registry: MachineRegistry,
    mac: str | bytes,
    arch: str | int | None,
    guid: str | bytes | None,
    vendor_class: str | bytes | None,
    now: float,
    auto_profile: str | None = None,
    limit: int | None = None,
) -> Machine | None:
    """Record at once what netboot told about one machine, and return it as stored (idempotent).

    For the HTTP boot decision under `boot.auto_profile`, whose answer depends on the record (it
    asks the rate first, bootsrv.machines.plan.boot_decision); DHCP, and HTTP otherwise, report
    sightings instead and have them recorded in batches (bootsrv.machines.discovery has the rules).
    An unknown MAC becomes a "discovered" machine, or with `auto_profile` (config
    `boot.auto_profile`, off by default) a "new" one with that profile and the host name
    `node-<mac hex>`, which installs at this very boot. For a known machine, fields that are
    still empty are filled in; nothing is overwritten and nothing is written when nothing is new.
    With `limit` (config `boot.discovered_limit`) the oldest discovered machines make room; None
    only if this one itself did not fit.
    """
    seen = discovery.Seen.of(mac, arch, guid, vendor_class, now)
    discovery.record_seen(registry, [seen], limit, auto_profile)
    return registry.get(seen.mac)


def _known_profile(profile: str, profiles: Collection[str] | None) -> str:
    profile = normalize_profile(profile)
    if profiles is not None and profile not in profiles:
        raise NotFound(f"profile: no profile {profile!r} (see `bootsrv profile list`)")
    return profile


def _comment(text: str) -> str:
    if len(text) > 200 or any(ord(c) < 32 for c in text):
        raise InvalidInput("comment", "must be at most 200 characters on one line")
    return text
