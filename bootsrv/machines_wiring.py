"""Where the machine use cases meet the rest of the process: the lease store and the profile catalog.

`address_book(wiring)` is the AddressBook over the process' lease store; `known_profiles(wiring)`
the profile names `machine add` checks against (None: no catalog, no check).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from bootsrv.machines_admin import AddressBook
from bootsrv.wiring import Wiring


def address_book(wiring: Wiring) -> AddressBook:
    from bootsrv.machines_leases import LeaseAddressBook

    return LeaseAddressBook(wiring.leases, wiring.config, wiring.clock)


def known_profiles(wiring: Wiring) -> Collection[str] | None:
    """The profile catalog's names (loading it validates every profile: a broken one is an error
    here too, not a silent "unknown profile"); None when the configured profiles directory does
    not exist (no catalog in this process, so no check)."""
    if not wiring.config.profiles.profiles_dir.is_dir():
        return None
    return wiring.profiles.names()


def guest_counts(wiring: Wiring) -> Mapping[str, int] | None:
    """Guests per hypervisor name, from the guest provisioner when this process has one
    (None: unknown, shown as "-")."""
    return None
