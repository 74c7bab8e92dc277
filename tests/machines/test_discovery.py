"""Discovery off the packet path: the batch decision (`plan`) as a table, `record` writing a batch
in one registry update, the limit and the rate against a flood, the queue the DHCP thread feeds,
the recorder's accounting, and the HTTP boot decision for unknown MACs (issue 16 item 3)."""

from __future__ import annotations

import logging
import random

import pytest
from machines_builders import NOW, CountingRegistry, machine

from bootsrv.app.discovery import DROP_LOG_EVERY, DiscoveryRecorder, discovery_recorder
from bootsrv.app.wiring import Wiring
from bootsrv.config import parse
from bootsrv.dhcp.pxe import Sighting
from bootsrv.machines.admin import discover
from bootsrv.machines.binding import MemoryAddresses
from bootsrv.machines.discovery import Seen, SightingQueue, TokenBucket, made_by_discovery, plan, record
from bootsrv.machines.model import MemoryRegistry, State
from bootsrv.machines.plan import boot_decision
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


# ---------------------------------------------------------------------------------------------
# The rate: a token bucket per process, shared by its recorder and its HTTP boot decision

# (rate, burst, steps) with each step (operation, argument, expected): available(now) -> count,
# take(now) -> granted, spend(count) -> None.
BUCKET = [
    pytest.param(
        10,
        5,
        [("available", 0, 5), ("spend", 5, None), ("available", 0, 0), ("available", 0.25, 2), ("available", 60, 5)],
        id="burst-then-rate-never-beyond-burst",
    ),
    pytest.param(
        2,
        2,
        [("take", 0, True), ("take", 0, True), ("take", 0, False), ("take", 0.4, False), ("take", 0.5, True)],
        id="take-one-at-a-time",
    ),
    pytest.param(
        1,
        4,
        [("available", 0, 4), ("spend", 6, None), ("available", 1, 0), ("take", 2, False), ("available", 3, 1)],
        id="overspent-is-a-debt-repaid-first",
    ),
    pytest.param(
        1,
        3,
        [("spend", 3, None), ("available", 100, 0), ("available", 40, 0), ("available", 42, 2)],
        id="clock-stepping-back-refills-nothing",
    ),
]


@pytest.mark.parametrize("rate, burst, steps", BUCKET)
def test_token_bucket(rate, burst, steps):
    bucket = TokenBucket(rate, burst)
    for operation, argument, expected in steps:
        assert getattr(bucket, operation)(argument) == expected, (operation, argument)


# (registry before, sightings, admit) -> (added, filled, over the rate), as ns
ADMIT = [
    pytest.param([], [seen(1), seen(2), seen(3)], 2, ([1, 2], [], [3]), id="first-seen-first"),
    pytest.param([], [seen(1), seen(1, NOW + 4), seen(2)], 1, ([1], [], [2]), id="retransmissions-are-one-machine"),
    pytest.param(
        [discovered(1, arch=None), machine(mac(2), arch=None)],
        [seen(3), seen(1), seen(2)],
        0,
        ([], [1, 2], [3]),
        id="known-machines-cost-no-token",
    ),
    pytest.param([], [seen(1), seen(2)], None, ([1, 2], [], []), id="no-rate"),
]


@pytest.mark.parametrize("before, sightings, admit, expected", ADMIT)
def test_plan_admits_at_most_the_rate(before, sightings, admit, expected):
    batch = plan({m.mac: m for m in before}, sightings, None, None, admit)
    added = sorted(m.mac for m, rev in batch.puts if rev is None)
    filled = sorted(m.mac for m, rev in batch.puts if rev is not None)
    assert (added, filled, sorted(batch.over_rate)) == tuple(sorted(mac(n) for n in part) for part in expected)


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_flood_is_recorded_within_the_rate_and_logged_once_per_interval(caplog):
    # Issue 16: 6,000 new MACs at 300/s, one batch every GATHER (0.5 s): 150 a batch, 20 s.
    clock = Clock()
    registry = CountingRegistry(MemoryRegistry([machine(mac(60_000), hostname="hv1", arch=None)]))
    queue = SightingQueue()
    recorder = DiscoveryRecorder(registry, queue, 1000, None, rate=TokenBucket(10, 100), clock=clock)
    with caplog.at_level(logging.INFO, logger="bootsrv.discovery"):
        for start in range(0, 6000, 150):
            for n in range(start, start + 150):
                queue.saw(sighting(n, clock.now))
            queue.saw(sighting(60_000, clock.now))  # the admin's machine netboots amid the flood
            clock.now += 0.5
            recorder.record_pending()
            recorder.log_drops()
        recorder.stop()
    # 100 at once, then 10 a second: the first batch 100, then 5 each of the other 39.
    assert recorder.added == 100 + 39 * 5 and recorder.over_rate == 6000 - recorder.added
    assert registry.writes == 40  # one a batch, as before
    assert registry.get(mac(60_000)).arch == "bios"  # its gaps filled at once: known machines cost no token
    dropped = [r for r in caplog.records if r.getMessage() == "discovery.dropped"]
    assert 2 <= len(dropped) <= 1 + 20 / DROP_LOG_EVERY  # at the first drop, then once per interval
    (stopped,) = [r for r in caplog.records if r.getMessage() == "discovery.stopped"]
    assert stopped.bootsrv_fields["over_rate"] == recorder.over_rate and stopped.bootsrv_fields["dropped"] == 0


def test_drops_are_logged_at_the_first_then_at_most_once_per_interval(caplog):
    clock = Clock()
    queue = SightingQueue(capacity=1)
    recorder = DiscoveryRecorder(MemoryRegistry(), queue, 10, None, rate=TokenBucket(1, 1), clock=clock)
    with caplog.at_level(logging.INFO, logger="bootsrv.discovery"):
        recorder.log_drops()  # nothing dropped: nothing said
        for n in range(30):  # 30 s of a flood, checked every second
            queue.saw(sighting(2 * n))
            queue.saw(sighting(2 * n + 1))  # the queue is full: dropped
            recorder.record_pending()
            recorder.log_drops()
            clock.now += 1
        clock.now += DROP_LOG_EVERY
        recorder.log_drops()  # what the last interval dropped, once the interval is over
        recorder.log_drops()  # and only once
    lines = [r.bootsrv_fields for r in caplog.records if r.getMessage() == "discovery.dropped"]
    assert len(lines) == 4 and lines[0]["seconds"] == "-"
    assert sum(line["queue_full"] for line in lines) == 30 == lines[-1]["total_queue_full"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.getMessage() == "discovery.dropped")


KNOWN_IP, STRANGER = "10.0.0.60", "10.0.0.99"


def boot_wiring(tmp_path, boot: str = "") -> Wiring:
    """`bootsrv serve`'s wiring for the HTTP boot decision, with a registry counting its writes."""
    w = Wiring(parse(f'[store]\ndirectory = "{tmp_path}"\n[boot]\n{boot}\n', "t"), clock=Clock())
    w.machines = CountingRegistry(MemoryRegistry([machine(mac(60_000), hostname="hv1", profile="lab-test")]))
    w.machine_addresses = MemoryAddresses({mac(60_000): [KNOWN_IP]})  # as its DHCP lease would
    return w


def random_macs(count: int, seed: int = 16) -> list[str]:
    rng = random.Random(seed)
    return [":".join(f"{b:02x}" for b in [0x02, *rng.randbytes(5)]) for _ in range(count)]


def test_boot_script_fetches_for_random_macs_write_nothing_and_are_recorded_within_the_rate(tmp_path):
    # Issue 16: each anonymous GET /boot/<random mac>.ipxe rewrote the registry on the request thread.
    w = boot_wiring(tmp_path, "discovered_limit = 50\ndiscovery_rate = 10\ndiscovery_burst = 20")
    for n, random_mac in enumerate(random_macs(2000)):
        assert boot_decision(w, w.planner, random_mac, STRANGER) == (None, "unknown machine")
        if n == 1000:  # the known machine amid the flood, from its address: its install, as always
            plan, _ = boot_decision(w, w.planner, mac(60_000), KNOWN_IP)
            assert plan is not None and plan.machine.state is State.INSTALLING
    assert w.machines.writes == 1  # the known machine's install (its token); none for the flood
    assert len(w.sightings) == 2000  # reported, for the recorder
    recorder = discovery_recorder(w)
    recorder.record_pending()
    assert (recorder.added, recorder.over_rate) == (20, 1980)  # the burst; the clock did not move
    for _ in range(10):  # the same flood again, a second apart: 10 more a second, the oldest out
        for random_mac in random_macs(2000, seed=_):
            boot_decision(w, w.planner, random_mac, STRANGER)
        w.clock.now += 1
        recorder.record_pending()
    assert recorder.added == 20 + 10 * 10
    assert sum(1 for m in w.machines.list() if m.state is State.DISCOVERED) == 50  # discovered_limit
    assert w.machines.writes == 1 + 11


def test_auto_profile_records_a_fetch_at_once_within_the_rate(tmp_path):
    # With auto_profile the script of an unknown MAC installs it at this very boot (docs/machines.md),
    # so it is written at once, but only while the rate has tokens; the others boot locally and
    # are reported, to install at a later boot.
    w = boot_wiring(tmp_path, 'auto_profile = "lab-test"\ndiscovery_rate = 1\ndiscovery_burst = 3')
    # Each asks from the address bootsrv's DHCP leased it (the install boot is bound to it).
    macs = random_macs(200)
    w.machine_addresses = MemoryAddresses({m: [f"10.1.0.{i + 1}"] for i, m in enumerate(macs)})
    decisions = [boot_decision(w, w.planner, m, f"10.1.0.{i + 1}") for i, m in enumerate(macs)]
    installs = [plan for plan, _ in decisions if plan is not None]
    assert len(installs) == 3 and {p.machine.state for p in installs} == {State.INSTALLING}
    assert [reason for plan, reason in decisions if plan is None] == ["unknown machine"] * 197
    assert len(w.sightings) == 197 and w.machines.writes == 3 * 2  # recorded, then its install token
    w.clock.now += 2
    recorder = discovery_recorder(w)
    recorder.record_pending()  # the reported ones: two more tokens in two seconds
    assert (recorder.added, recorder.over_rate) == (2, 195)


@pytest.mark.parametrize(
    "processes, rate, burst", [(1, 10.0, 100), (4, 2.5, 25), (64, 10 / 64, 1)], ids=["one", "four", "one-each-at-least"]
)
def test_the_rate_is_shared_out_among_the_dhcp_processes(processes, rate, burst):
    # Each process records its own sightings with its own bucket: the server's total is the config's
    # (the defaults: 10 a second, 100 at once).
    w = Wiring(parse(f"[dhcp]\nprocesses = {processes}\n", "t"))
    assert (w.discovery_rate.rate, w.discovery_rate.burst) == (rate, burst)
