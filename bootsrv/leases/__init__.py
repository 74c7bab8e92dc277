"""The shared lease store (see docs/lease-store.md): records, the operations over them, and the
in-memory and file-backed implementations."""

import time

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
    normalize_client_id,
    pools_from_config,
)
from bootsrv.leases.store import AddressTaken, LeaseStore

__all__ = [
    "NEVER", "NONE", "AddressTaken", "Collision", "Flag", "LeaseStore", "Pool", "PoolExhausted", "Range",
    "Record", "UnknownNetwork", "client_id_of_mac", "mac_of_client_id", "normalize_client_id", "open_store", "pools_from_config",
]


def open_store(config, clock=time.time):
    """The file store over `config.store.directory` (created if missing) for this server's
    `owner_ips`, with one pool per configured network. `clock` is accepted for the wiring's
    sake; the store's operations take `now` from their callers."""
    from bootsrv.leases.files import FileStore

    # One serving process per server: its offer holds stay in memory (LeaseStore.offers_in_memory).
    return FileStore(config.store.directory, pools_from_config(config), config.server.owner_ips,
                     offers_in_memory=True)
