"""The lease store in memory: the contract's reference implementation and the unit tests' store.

Several handles (`MemoryStore(..., backend=shared)`) may share one `MemoryBackend`, which is how
unit tests put the two servers of a pair on "one directory" without files.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from ipaddress import IPv4Address

from bootsrv.leases.model import Collision, Pool, Record, Table
from bootsrv.leases.store import LeaseStore, new_signature


class MemoryBackend:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tables: dict[str, Table] = {}
        self.adoptions: dict[IPv4Address, IPv4Address] = {}


class MemoryStore(LeaseStore):
    def __init__(
        self,
        pools: Mapping[str, Pool],
        owner_ips: Iterable[IPv4Address],
        backend: MemoryBackend | None = None,
        *,
        offers_in_memory: bool = False,
        stripe: tuple[int, int] = (0, 1),
    ):
        super().__init__(pools, owner_ips, offers_in_memory=offers_in_memory, stripe=stripe)
        self.backend = backend or MemoryBackend()
        with self.backend.lock:
            for name in self.pools:
                self.backend.tables.setdefault(name, Table())

    def _table(self, network: str) -> Table:
        return self.backend.tables[network]

    def _write(self, record: Record, expect: int) -> tuple[Record, object]:
        with self.backend.lock:
            table = self.backend.tables[record.network]
            current = table.records.get(record.ip)
            found = current.signature if current else 0
            if found != expect:
                raise Collision(record.network, record.ip, expect, found)
            stored = replace(record, signature=new_signature())
            table.put(stored)
            return stored, None

    def _erase(self, network: str, ip: IPv4Address, expect: int) -> object:
        with self.backend.lock:
            table = self.backend.tables[network]
            current = table.records.get(ip)
            found = current.signature if current else 0
            if found != expect:
                raise Collision(network, ip, expect, found)
            table.drop(ip)
            return None

    def adoptions(self) -> dict[IPv4Address, IPv4Address]:
        return dict(self.backend.adoptions)

    def _record_adoption(self, peer: IPv4Address, heir: IPv4Address) -> None:
        with self.backend.lock:
            self.backend.adoptions[peer] = heir
