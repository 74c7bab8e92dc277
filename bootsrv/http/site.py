"""What the HTTP app needs of the server it runs in: a small protocol that bootsrv.app's Wiring
fulfils, so that http/ depends on the use cases it serves and never on the wiring itself."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from bootsrv.config import Config
from bootsrv.machines.admin import AddressBook
from bootsrv.machines.binding import MachineAddresses
from bootsrv.machines.discovery import SightingQueue, TokenBucket
from bootsrv.machines.model import MachineRegistry
from bootsrv.machines.plan import PlanBuilder, Planner
from bootsrv.profiles.catalog import Catalog


class Site(Protocol):
    config: Config
    clock: Callable[[], float]
    machines: MachineRegistry
    profiles: Catalog
    plans: PlanBuilder
    planner: Planner
    address_book: AddressBook
    sightings: SightingQueue  # unknown MACs whose boot script was asked for (bootsrv.app.discovery records them)
    discovery_rate: TokenBucket
    machine_addresses: MachineAddresses  # where a machine may fetch its install and call back from

    def known_profiles(self) -> Collection[str] | None: ...
