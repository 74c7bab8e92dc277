"""Several file-store handles on one directory, random operations: after every step every handle
sees the same records, and they are what the in-memory reference store (same operations, same
handles) holds. A fresh handle opened on the directory sees the same too (nothing only in memory)."""

from __future__ import annotations

import os
import shutil
import tempfile
from ipaddress import IPv4Address as IP

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bootsrv.errors import BootsrvError
from bootsrv.leases import client_id_of_mac
from bootsrv.leases.files import FileStore
from bootsrv.leases.memory import MemoryBackend, MemoryStore
from tests.leases.conftest import POOLS, A, B

SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
OWNERS = [(A,), (A,), (B,)]  # two handles of server A (two processes of one server) and server B
CLIENTS = [client_id_of_mac(f"52:54:00:00:07:{i:02x}") for i in range(14)]
ADDRESSES = [IP(f"10.0.0.{i}") for i in (10, 11, 12, 19, 20, 25, 29, 50, 51)]

handle = st.integers(0, len(OWNERS) - 1)
client = st.integers(0, len(CLIENTS) - 1)
network = st.sampled_from(["public", "backend"])


def view(records):
    return sorted(
        (r.network, int(r.ip), r.client_id, int(r.flags), str(r.owner), r.expiry, r.macro, r.hostname, r.comment)
        for r in records
    )


def outcome(call):
    try:
        result = call()
    except BootsrvError as exc:
        return ("error", type(exc).__name__)
    if result is None or isinstance(result, int):
        return ("value", result)
    return ("record", view([result]))


class SharedDirectory(RuleBasedStateMachine):
    NFS = False  # the NFS precautions forced on (see tests/leases/conftest.py)

    def open(self, owners):
        return FileStore(self.dir, POOLS, owners, nfs=self.NFS)

    def __init__(self):
        super().__init__()
        # tmpfs when there is one: what is checked here is agreement between handles, not the
        # disk, and on a busy disk every fsync of a few thousand steps adds up to minutes.
        self.dir = tempfile.mkdtemp(prefix="leases-stateful-", dir=SCRATCH)
        self.backend = MemoryBackend()
        self.files = [self.open(o) for o in OWNERS]
        self.models = [MemoryStore(POOLS, o, backend=self.backend) for o in OWNERS]
        self.now = 1_700_000_000

    def both(self, h, op):
        got, want = outcome(lambda: op(self.files[h])), outcome(lambda: op(self.models[h]))
        assert got == want, f"handle {h}: file store {got} != reference {want}"

    @rule(h=handle, c=client, net=network, requested=st.none() | st.sampled_from(ADDRESSES))
    def offer(self, h, c, net, requested):
        if requested is not None and net != "public":
            requested = None
        self.both(h, lambda s: s.offer(net, CLIENTS[c], self.now, 30, requested=requested))

    @rule(h=handle, c=client, net=network, hostname=st.sampled_from([None, "", "node-a"]))
    def ack_offered(self, h, c, net, hostname):
        held = self.models[h].find(net, CLIENTS[c], self.now)
        ip = held.ip if held is not None else IP("10.0.0.13" if net == "public" else "10.1.0.11")
        self.both(h, lambda s: s.ack(net, ip, CLIENTS[c], self.now, 120, hostname=hostname))

    @rule(h=handle, c=client)
    def ack_deferred(self, h, c):  # the DHCP loop's way: the flusher thread resolves the future
        held = self.models[h].find("public", CLIENTS[c], self.now)
        ip = held.ip if held is not None else IP("10.0.0.14")
        self.both(h, lambda s: s.ack_pending("public", ip, CLIENTS[c], self.now, 90).result())

    @rule(h=handle, c=client, ip=st.sampled_from(ADDRESSES))
    def ack_any(self, h, c, ip):
        self.both(h, lambda s: s.ack("public", ip, CLIENTS[c], self.now, 60))

    @rule(h=handle, c=client, net=network)
    def release(self, h, c, net):
        held = self.models[h].find(net, CLIENTS[c], self.now)
        if held is not None:
            self.both(h, lambda s: s.release(net, held.ip, CLIENTS[c]))

    @rule(h=handle, c=client)
    def decline(self, h, c):
        held = self.models[h].find("public", CLIENTS[c], self.now)
        if held is not None:
            self.both(h, lambda s: s.decline("public", held.ip, CLIENTS[c], self.now, 45))

    @rule(h=handle, c=client, ip=st.sampled_from(ADDRESSES), name=st.sampled_from(["", "vm1", "vm2"]))
    def bind(self, h, c, ip, name):
        self.both(h, lambda s: s.bind("public", ip, CLIENTS[c], name, now=self.now, comment="x|y"))

    @rule(h=handle, ip=st.sampled_from(ADDRESSES))
    def delete(self, h, ip):
        self.both(h, lambda s: s.delete("public", ip))

    @rule(h=handle, ip=st.sampled_from(ADDRESSES), comment=st.text(max_size=5))
    def modify(self, h, ip, comment):
        self.both(h, lambda s: s.modify("public", ip, comment=comment))

    @rule(h=handle, net=network)
    def expire(self, h, net):
        self.both(h, lambda s: s.expire(net, self.now))

    @rule(seconds=st.sampled_from([1, 31, 61, 200]))
    def tick(self, seconds):
        self.now += seconds

    @rule(h=handle)
    def compact(self, h):
        self.files[h].compact()

    @precondition(lambda self: not self.backend.adoptions)
    @rule()
    def adopt(self):
        self.both(0, lambda s: s.adopt(B))

    @rule(h=handle)
    def reopen(self, h):
        self.files[h].close()
        self.files[h] = self.open(OWNERS[h])
        self.models[h] = MemoryStore(POOLS, OWNERS[h], backend=self.backend)  # a new cursor too

    @invariant()
    def every_handle_agrees_with_the_reference(self):
        want = view(self.models[0].records())
        for h, store in enumerate(self.files):
            assert view(store.records()) == want, f"handle {h} disagrees"
            assert store.problems == []
            assert store.adoptions() == self.backend.adoptions

    def teardown(self):
        fresh = self.open((A,))
        try:
            assert view(fresh.records()) == view(self.models[0].records())
        finally:
            fresh.close()
            for store in self.files:
                store.close()
            shutil.rmtree(self.dir, ignore_errors=True)


class SharedDirectoryNfsMode(SharedDirectory):
    NFS = True


SETTINGS = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SharedDirectory.TestCase.settings = SETTINGS
SharedDirectoryNfsMode.TestCase.settings = settings(SETTINGS, max_examples=30)
test_shared_directory = SharedDirectory.TestCase
test_shared_directory_nfs_mode = SharedDirectoryNfsMode.TestCase
