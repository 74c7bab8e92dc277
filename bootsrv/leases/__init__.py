"""The shared lease store (see docs/lease-store.md): records, the operations over them, and the
in-memory and file-backed implementations."""

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bootsrv.leases.model import (
    NEVER,
    NONE,
    Collision,
    Flag,
    Pool,
    PoolExhausted,
    Range,
    Record,
    UnknownNetwork,
    client_id_of_mac,
    mac_of_client_id,
    pools_from_config,
)
from bootsrv.leases.rules import normalize_client_id
from bootsrv.leases.store import AddressTaken, LeaseStore, Pending

if TYPE_CHECKING:
    from bootsrv.config import Config
    from bootsrv.leases.files import FileStore

__all__ = [
    "NEVER",
    "NONE",
    "AddressTaken",
    "Collision",
    "Flag",
    "LeaseStore",
    "Pending",
    "Pool",
    "PoolExhausted",
    "Range",
    "Record",
    "UnknownNetwork",
    "client_id_of_mac",
    "mac_of_client_id",
    "normalize_client_id",
    "open_store",
    "pools_from_config",
]


def open_store(config: "Config", clock: Callable[[], float] = time.time, dhcp_process: int = 0) -> "FileStore":
    """The file store over `config.store.directory` (created if missing) for this server's
    `owner_ips`, with one pool per configured network. `clock` is accepted for the wiring's
    sake; the store's operations take `now` from their callers. `dhcp_process` is which of the
    server's `dhcp.processes` this is: each allocates from its own stripe of the ranges."""
    from bootsrv.leases.files import FileStore

    # Each serving process keeps its offer holds in memory (LeaseStore.offers_in_memory); the
    # stripes keep the processes of one server from holding the same free address.
    return FileStore(
        config.store.directory,
        pools_from_config(config),
        config.server.owner_ips,
        offers_in_memory=True,
        stripe=(dhcp_process, config.dhcp.processes),
    )
