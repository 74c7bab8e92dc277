"""Where the machine use cases meet the rest of the process: the lease store and the profile catalog.

`address_book(wiring)` is the AddressBook over the process' lease store; `known_profiles(wiring)`
the profile names `machine add` checks against (None: no catalog, no check).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from bootsrv.errors import BootsrvError
from bootsrv.machines_admin import AddressBook
from bootsrv.wiring import Wiring


class NoLeaseStore(BootsrvError):
    exit_code = 6
    http_status = 503


class UnavailableBook:
    """Stands in when this process has no lease store: binding an address is refused, clearly."""

    def bind(self, network: str, ip: str, mac: str, hostname: str) -> None:
        raise NoLeaseStore(f"address.{network}: no lease store is wired in this process; cannot bind {ip}")

    def release(self, network: str, ip: str, mac: str) -> None:
        return None


def address_book(wiring: Wiring) -> AddressBook:
    store = getattr(wiring, "leases", None)
    if store is None:
        return UnavailableBook()
    from bootsrv.machines_leases import LeaseAddressBook

    return LeaseAddressBook(store, wiring.config, wiring.clock)


def known_profiles(wiring: Wiring) -> Collection[str] | None:
    return None


def guest_counts(wiring: Wiring) -> Mapping[str, int] | None:
    """Guests per hypervisor name, from the guest provisioner when this process has one
    (None: unknown, shown as "-")."""
    return None
