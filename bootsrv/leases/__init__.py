"""The shared lease store (see docs/lease-store.md): records, the operations over them, and the
in-memory and file-backed implementations."""

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
    normalize_client_id,
    pools_from_config,
)
from bootsrv.leases.store import AddressTaken, LeaseStore

__all__ = [
    "NEVER", "NONE", "AddressTaken", "Collision", "Flag", "LeaseStore", "Pool", "PoolExhausted", "Range",
    "Record", "UnknownNetwork", "client_id_of_mac", "normalize_client_id", "pools_from_config",
]
