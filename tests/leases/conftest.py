"""Store factories for the contract tests: every implementation of bootsrv.leases.LeaseStore.

`stores(owner_ips)` opens a handle; calling it again with other owner addresses opens a second
handle on the same storage (the other server of the pair). File-backed implementations register
themselves in IMPLEMENTATIONS.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from bootsrv.leases import Pool, Range
from bootsrv.leases.memory import MemoryBackend, MemoryStore

A = IPv4Address("10.0.0.1")  # server A of the pair
B = IPv4Address("10.0.0.2")  # server B

POOLS = {
    "public": Pool(
        "public",
        IPv4Network("10.0.0.0/24"),
        (
            Range(IPv4Address("10.0.0.10"), IPv4Address("10.0.0.19"), A),
            Range(IPv4Address("10.0.0.20"), IPv4Address("10.0.0.29"), B),
        ),
        frozenset({A, B, IPv4Address("10.0.0.254")}),
    ),
    "backend": Pool(
        "backend",
        IPv4Network("10.1.0.0/24"),
        (Range(IPv4Address("10.1.0.10"), IPv4Address("10.1.0.12"), A),),
        frozenset(),
    ),
}


def memory_factory(tmp_path, offers_in_memory=False):
    backend = MemoryBackend()
    return lambda owner_ips=(A,), pools=POOLS: MemoryStore(
        pools, owner_ips, backend=backend, offers_in_memory=offers_in_memory
    )


def file_factory(tmp_path, nfs=None, offers_in_memory=False):
    from bootsrv.leases.files import FileStore

    handles = []

    def make(owner_ips=(A,), pools=POOLS):
        store = FileStore(tmp_path / "store", pools, owner_ips, nfs=nfs, offers_in_memory=offers_in_memory)
        handles.append(store)
        return store

    make.handles = handles
    return make


def nfs_mode_factory(tmp_path):
    """The file store with its NFS precautions forced on (generation checks, the table file
    locked too, path stats): this machine's kernel has no NFS, so this is how that path runs."""
    return file_factory(tmp_path, nfs=True)


IMPLEMENTATIONS = {
    "memory": memory_factory,
    "memory-offers-held-in-memory": lambda tmp_path: memory_factory(tmp_path, offers_in_memory=True),
}
try:
    import bootsrv.leases.files  # noqa: F401

    IMPLEMENTATIONS["file"] = file_factory
    IMPLEMENTATIONS["file-nfs-mode"] = nfs_mode_factory
    # The store `bootsrv serve` uses (open_store): offer holds kept by the serving handle.
    IMPLEMENTATIONS["file-offers-held-in-memory"] = lambda tmp_path: file_factory(tmp_path, offers_in_memory=True)
except ImportError:
    pass


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def stores(request, tmp_path):
    make = IMPLEMENTATIONS[request.param](tmp_path)
    yield make
    for handle in getattr(make, "handles", []):
        handle.close()
