"""Discovery off the packet path: the batch decision (`plan`) as a table, `record` writing a batch
in one registry update, the limit against a flood, and the queue the DHCP thread feeds."""

from __future__ import annotations

import pytest
from machines_builders import NOW, machine

from bootsrv.dhcp.pxe import Sighting
from bootsrv.machines.admin import discover
from bootsrv.machines.discovery import Seen, SightingQueue, made_by_discovery, plan, record
from bootsrv.machines.model import MemoryRegistry, State
from bootsrv.machines.store import FileRegistry
from bootsrv.values import normalize_guid

GUID = b"\x00" + bytes(range(16))
BIOS = b"PXEClient:Arch:00000:UNDI:002001"


def mac(n: int) -> str:
    return f"52:54:00:00:{n >> 8:02x}:{n & 0xFF:02x}"


def sighting(
    n: int, at: float = NOW, arch: int | None = 0, guid: bytes | None = GUID, vendor: bytes = BIOS
) -> Sighting:
    return Sighting(mac(n), arch, guid, vendor, at)


def seen(n: int, at: float = NOW, **kw) -> Seen:
    return Seen.of_sighting(sighting(n, at, **kw))


def discovered(n: int, at: float = NOW - 100, **over) -> object:
    return machine(mac(n), hostname="", state=State.DISCOVERED, profile=None, created=at, updated=at, **over)


def auto(n: int, at: float = NOW - 100, state: State = State.NEW) -> object:
    return machine(mac(n), hostname="node-" + mac(n).replace(":", ""), state=state, profile="p", created=at, updated=at)


class CountingRegistry:
    """A MachineRegistry that counts its writes (each one a locked rewrite of the file)."""

    def __init__(self, inner):
        self.inner, self.writes = inner, 0

    def get(self, mac):
        return self.inner.get(mac)

    def list(self):
        return self.inner.list()

    def put(self, m, expected):
        self.writes += 1
        return self.inner.put(m, expected)

    def put_many(self, machines, removals=()):
        self.writes += 1
        return self.inner.put_many(machines, removals)

    def remove(self, mac, expected):
        self.writes += 1
        return self.inner.remove(mac, expected)


# (registry before, sightings, limit, auto_profile) -> (added, filled, pushed out, over the limit), as ns
CASES = [
    pytest.param([], [seen(1)], None, None, ([1], [], [], []), id="unknown-is-added"),
    pytest.param(
        [], [seen(1), seen(1, NOW + 4), seen(2)], None, None, ([1, 2], [], [], []), id="retransmissions-are-one"
    ),
    pytest.param(
        [discovered(1, arch=None, guid=None)], [seen(1)], None, None, ([], [1], [], []), id="known-gets-its-gaps-filled"
    ),
    pytest.param(
        [discovered(1, arch="bios", guid=normalize_guid(GUID), vendor_class=BIOS.decode())],
        [seen(1)],
        None,
        None,
        ([], [], [], []),
        id="known-with-nothing-new-is-not-written",
    ),
    pytest.param([machine(mac(1))], [seen(1)], None, None, ([], [1], [], []), id="admins-machine-only-filled"),
    pytest.param(
        [discovered(1, NOW - 300), discovered(2, NOW - 100), discovered(3, NOW - 200)],
        [seen(4), seen(5)],
        3,
        None,
        ([4, 5], [], [1, 3], []),
        id="limit-pushes-out-the-oldest",
    ),
    pytest.param(
        [discovered(1, NOW - 300), machine(mac(2)), auto(3, state=State.INSTALLING), auto(4, NOW - 400)],
        [seen(5)],
        1,
        "p",
        ([5], [], [1, 4], []),
        id="limit-spares-admins-and-installs",
    ),
    pytest.param(
        [],
        [seen(1, NOW + 1), seen(2, NOW + 3), seen(3, NOW + 2)],
        2,
        None,
        ([2, 3], [], [], [1]),
        id="batch-beyond-the-limit-keeps-the-newest",
    ),
    pytest.param([discovered(1, NOW - 10)], [seen(1, NOW)], 1, None, ([], [1], [], []), id="filling-in-is-not-growing"),
]


@pytest.mark.parametrize("before, sightings, limit, auto_profile, expected", CASES)
def test_plan(before, sightings, limit, auto_profile, expected):
    batch = plan({m.mac: m for m in before}, sightings, limit, auto_profile)
    added = sorted(m.mac for m, rev in batch.puts if rev is None)
    filled = sorted(m.mac for m, rev in batch.puts if rev is not None)
    got = (added, filled, sorted(m for m, _ in batch.removals), sorted(batch.over_limit))
    assert got == tuple(sorted(mac(n) for n in part) for part in expected)
    known = {m.mac: m for m in before}
    for m, rev in batch.puts:
        if rev is None:  # new: discovered, or new under the auto profile
            assert m.state is (State.NEW if auto_profile else State.DISCOVERED) and made_by_discovery(m)
            assert m.profile == auto_profile and m.arch == "bios" and m.vendor_class == BIOS.decode()
        else:  # known: same state, nothing it had overwritten
            old = known[m.mac]
            assert m.state is old.state and rev == old.revision
            assert all(getattr(m, f) == getattr(old, f) for f in ("arch", "guid", "vendor_class") if getattr(old, f))


def test_forty_sightings_are_one_registry_write(tmp_path):
    registry = CountingRegistry(FileRegistry(tmp_path))
    batch = record(registry, [sighting(n) for n in range(40)], limit=1000, auto_profile=None)
    assert registry.writes == 1 and len(batch.puts) == 40
    stored = FileRegistry(tmp_path).list()  # as the peer server reads the file
    assert len(stored) == 40 and {m.state for m in stored} == {State.DISCOVERED}
    record(registry, [sighting(n, NOW + 4) for n in range(40)], limit=1000, auto_profile=None)
    assert registry.writes == 1  # their retransmissions: known now, nothing new, nothing written


def test_a_bad_sighting_is_refused_alone(tmp_path):
    registry = FileRegistry(tmp_path)
    batch = record(
        registry,
        [sighting(1, vendor=b"\xffbinary"), sighting(2), sighting(3, guid=b"\x01" * 17)],
        limit=10,
        auto_profile=None,
    )
    assert [m.mac for m in registry.list()] == [mac(2)]
    assert [(m, why.split(":")[0]) for m, why in batch.refused] == [(mac(1), "vendor_class"), (mac(3), "guid")]


def test_a_flood_never_grows_the_registry_past_the_limit():
    # Issue 16: 6,000 random MACs at 300/s; the recorder writes every GATHER (0.5 s): 150 a batch.
    registry = CountingRegistry(MemoryRegistry([machine(mac(60_000), hostname="hv1")]))
    for start in range(0, 6000, 150):
        record(registry, [sighting(n, NOW + n / 300) for n in range(start, start + 150)], limit=1000, auto_profile=None)
        assert len(registry.list()) <= 1001
    assert registry.writes == 40
    kept = [m for m in registry.list() if m.state is State.DISCOVERED]
    assert len(kept) == 1000 and min(m.mac for m in kept) == mac(5000)  # the newest 1,000
    assert registry.get(mac(60_000)) is not None  # the admin's machine stays


def test_the_peer_wrote_meanwhile_and_the_batch_is_planned_again():
    class PeerFirst(MemoryRegistry):
        """The other server records machine 1 between our read and our write."""

        raced = False

        def put_many(self, machines, removals=()):
            if not self.raced:
                self.raced = True
                super().put_many([(discovered(1, NOW), None)])
            return super().put_many(machines, removals)

    registry = PeerFirst()
    record(registry, [sighting(1), sighting(2)], limit=None, auto_profile=None)
    assert [(m.mac, m.revision) for m in registry.list()] == [(mac(1), 2), (mac(2), 1)]  # 1 filled in, not duplicated


def test_discover_keeps_to_the_limit():
    registry = MemoryRegistry([discovered(1, NOW - 10)])
    assert discover(registry, mac(2), 0, None, None, NOW, limit=1).mac == mac(2)
    assert [m.mac for m in registry.list()] == [mac(2)]


def test_queue_merges_retransmissions_and_drops_when_full():
    queue = SightingQueue(capacity=2)
    queue.saw(sighting(1, guid=None))
    queue.saw(sighting(1, NOW + 4))  # the retransmission tells the GUID
    queue.saw(sighting(2))
    queue.saw(sighting(3))  # full: dropped, counted, never waited for
    assert queue.dropped == 1 and len(queue) == 2 and queue.wait(0)
    taken = queue.take()
    assert taken == [sighting(1), sighting(2)]  # the first sighting, completed by the second
    assert len(queue) == 0 and not queue.wait(0)
    queue.saw(sighting(3))  # room again
    assert queue.take() == [sighting(3)]
