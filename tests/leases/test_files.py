"""What only the file store has to get right: the format on disk, torn and corrupt lines,
incremental rescan, compaction under open handles, adoption on disk, group commit."""

from __future__ import annotations

import os
import threading
from ipaddress import IPv4Address as IP

import pytest

from bootsrv.leases import Flag, Record, client_id_of_mac
from bootsrv.leases.codec import StoreCorrupt, decode, encode, table_header
from bootsrv.leases.files import FileStore
from tests.leases.conftest import POOLS, A, B

NOW = 1_700_000_000


def cid(i: int) -> str:
    return client_id_of_mac(f"52:54:00:00:{i >> 8:02x}:{i & 0xFF:02x}")


@pytest.fixture
def open_store(tmp_path):
    handles = []

    def make(owner_ips=(A,)):
        store = FileStore(tmp_path / "store", POOLS, owner_ips)
        handles.append(store)
        return store

    make.path = tmp_path / "store"
    yield make
    for handle in handles:
        handle.close()


def lease(store, i, network="public", **kw):
    return store.ack(network, store.offer(network, cid(i), NOW, 30).ip, cid(i), NOW, 3600, **kw)


def test_lines_are_grepable_and_round_trip(open_store):
    store = open_store()
    lease(store, 1, hostname="node1")
    store.bind("public", "10.0.0.50", cid(2), "vm1", macro="pxe", comment="odd | text \\ with | bars")
    store.bind("public", "10.0.0.51", cid(3), "vm2")
    store.delete("public", "10.0.0.51")
    text = (open_store.path / "leases.public").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# bootsrv lease table v1 network=public")
    assert any(line.startswith(f"10.0.0.10|{cid(1)}|00|10.0.0.1|{NOW + 3600}|") and "|node1|" in line for line in lines)
    assert "10.0.0.51|00|00|0.0.0.0|0|0|||" in text  # the deletion
    again = open_store((B,))
    assert again.records() == store.records() and again.problems == []
    assert again.get("public", "10.0.0.50").comment == "odd | text \\ with | bars"


def test_codec_refuses_a_changed_byte():
    rec = Record("public", IP("10.0.0.9"), "01AA", Flag.MANUAL, A, 77, 5, "m", "h", "c")
    line = encode(rec).rstrip(b"\n")
    assert decode("public", line) == (rec.ip, rec)
    for i in range(len(line)):
        bad = line[:i] + bytes([line[i] ^ 0x01]) + line[i + 1 :]
        with pytest.raises((ValueError, UnicodeDecodeError)):
            decode("public", bad)


def test_torn_tail_is_reported_cut_off_and_valid_records_kept(open_store):
    store = open_store()
    kept = [lease(store, i) for i in range(3)]
    path = open_store.path / "leases.public"
    line = encode(kept[0]).decode()
    with path.open("a") as fh:
        fh.write(line[: len(line) // 2])  # a writer died mid-append
    other = open_store((B,))
    assert [p for p in other.problems if "torn tail" in p]
    assert {r.ip: r for r in other.records("public")} == {r.ip: r for r in kept}
    assert path.read_text().endswith("\n")  # cut off under the lock: the next line starts clean
    after = lease(other, 7)
    fresh = open_store()
    assert fresh.problems == [] and fresh.get("public", after.ip) == after


def test_corrupt_line_in_the_middle_is_skipped_and_reported(open_store):
    store = open_store()
    recs = [lease(store, i) for i in range(3)]
    path = open_store.path / "leases.public"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3][:20] + b"\x00" + lines[3][21:]  # client 1's offer line (its ack follows)
    path.write_bytes(b"\n".join(lines))
    other = open_store((B,))
    assert len(other.problems) == 1 and "checksum" in other.problems[0]
    assert other.records("public") == recs


def test_unknown_version_is_refused(open_store):
    open_store().close()
    path = open_store.path / "leases.public"
    path.write_bytes(path.read_bytes().replace(b"table v1", b"table v9", 1))
    with pytest.raises(StoreCorrupt, match="version 9"):
        open_store()


def test_rescan_reads_only_what_changed(open_store):
    a, b = open_store((A,)), open_store((B,))
    assert b.rescan() == 0
    lease(a, 1)
    lease(a, 2)
    assert b.rescan() == 2  # two addresses, each written twice (offer, ack): their latest state
    assert b.rescan() == 0
    assert b.find("public", cid(2), NOW).client_id == cid(2)


def test_reader_skips_a_line_still_being_written(open_store):
    a, b = open_store((A,)), open_store((B,))
    rec = lease(a, 1)
    path = open_store.path / "leases.public"
    full = path.read_bytes()
    later = encode(rec.__class__(**{**rec.__dict__, "hostname": "late", "signature": 99}))
    with path.open("ab") as fh:
        fh.write(later[:10])  # another process mid-append: not yet a line
    b.rescan()
    assert b.get("public", rec.ip) == rec and b.problems == []
    with path.open("ab") as fh:
        fh.write(later[10:])
    b.rescan()
    assert b.get("public", rec.ip).hostname == "late"
    assert path.read_bytes() == full + later


def test_compaction_keeps_live_records_and_open_handles_follow(open_store):
    a, b = open_store((A,)), open_store((B,))
    for i in range(5):
        lease(a, i)
    a.release("public", a.find("public", cid(0), NOW).ip, cid(0))
    b.bind("public", "10.0.0.60", cid(9), "vm9")
    b.delete("public", "10.0.0.60")
    before = a.records()
    sizes = a.compact("public")
    assert sizes["public"][1] < sizes["public"][0]
    lines = (open_store.path / "leases.public").read_text().splitlines()
    assert len(lines) == 1 + 5  # header + one line per address (the released one stays, free)
    assert b.records() == before  # b noticed the new file without the lock (new inode)
    # b writes through the lock: its line must land in the new file, seen by a fresh handle
    got = lease(b, 20)
    assert open_store().get("public", got.ip) == got
    assert a.get("public", got.ip) == got


def test_writer_with_old_file_open_follows_compaction_under_the_lock(open_store):
    a, b = open_store((A,)), open_store((B,))
    lease(a, 1)
    b.rescan()
    a.compact()
    # b has not looked; its first write catches up under the lock (generation in the lock file)
    got = b.ack("public", IP("10.0.0.20"), cid(5), NOW, 60)
    assert open_store().get("public", got.ip) == got


def test_adoption_is_on_disk(open_store):
    a, b = open_store((A,)), open_store((B,))
    lease(b, 1)
    assert a.adopt(B) == 1
    later = open_store((A,))
    assert later.adoptions() == {B: A} and later.owns_address("public", IP("10.0.0.25"))
    assert b.rescan() >= 1 and b.adoptions() == {B: A}


def test_group_commit_shares_fsyncs(open_store):
    store = open_store()
    ips = [IP(f"10.0.0.{10 + k}") for k in range(10)]
    for k, ip in enumerate(ips):
        store.ack("public", ip, cid(k), NOW, 60)
    start = store._commit.flushes
    errors = []

    def renew(k):  # one client renewing its lease five times, durable each time
        try:
            for j in range(1, 6):
                store.ack("public", ips[k], cid(k), NOW + j, 60)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=renew, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert 1 <= store._commit.flushes - start <= 50  # never more fsyncs than commits
    fresh = open_store((B,))
    assert all(fresh.get("public", ip).expiry == NOW + 5 + 60 for ip in ips)


def test_a_batch_of_pending_acks_takes_one_flush_and_no_thread(open_store):
    store = open_store()
    flushes = store._commit.flushes
    pending = [store.ack_pending("public", IP(f"10.0.0.{10 + i}"), cid(i), NOW, 60) for i in range(10)]
    assert store._commit.flushes == flushes  # written, not yet durable
    recs = [p.result() for p in pending]  # the first leads a flush that covers all ten
    assert store._commit.flushes == flushes + 1 and store._commit._durable == store._commit._written
    assert store._commit._thread is None  # nobody queued behind a flush: no flusher thread
    fresh = open_store((B,))
    assert all(fresh.get("public", r.ip) == r for r in recs)


def test_header_names_the_network():
    assert table_header("backend").startswith(b"# bootsrv lease table v1 network=backend ")


def test_busy_table_compacts_itself_in_the_background(open_store, monkeypatch):
    import bootsrv.leases.files as files

    monkeypatch.setattr(files, "AUTO_COMPACT_SLACK", 40)
    a, b = open_store(), open_store((B,))
    ip = lease(a, 1).ip
    for j in range(200):  # renewals: one line each
        a.ack("public", ip, cid(1), NOW + j, 3600)
    if a._compactor is not None:
        a._compactor.join()
    lines = (open_store.path / "leases.public").read_text().splitlines()
    assert len(lines) < 100  # compacted at least once (without it: 202 lines)
    assert b.get("public", ip).expiry == NOW + 199 + 3600
    assert open_store().get("public", ip) == a.get("public", ip)


def test_compaction_copies_lines_appended_while_it_wrote(open_store, monkeypatch):
    import bootsrv.leases.files as files

    a, b = open_store(), open_store((B,))
    for i in range(5):
        lease(a, i)
    real = files._write_all
    late = []

    def write_then_someone_appends(fd, data):
        real(fd, data)
        if not late:  # between the snapshot and the lock: another handle writes
            late.append(b.ack("public", IP("10.0.0.20"), cid(9), NOW, 60))

    monkeypatch.setattr(files, "_write_all", write_then_someone_appends)
    a.compact("public")
    monkeypatch.setattr(files, "_write_all", real)
    fresh = open_store()
    assert fresh.get("public", IP("10.0.0.20")) == late[0]
    assert fresh.records() == a.records() == b.records()


def test_reader_sees_a_line_that_replaced_a_torn_tail_of_the_same_length(open_store, monkeypatch):
    import bootsrv.leases.files as files

    a, b = open_store(), open_store((B,))
    monkeypatch.setattr(files.random, "getrandbits", lambda bits: 123456789)
    line = encode(Record("public", IP("10.0.0.20"), cid(9), Flag.DYNAMIC, B, NOW + 60, 123456789))
    path = open_store.path / "leases.public"
    with path.open("ab") as fh:
        fh.write(b"x" * len(line))  # a dead writer's garbage without a newline, as long as the next line
    a.rescan()
    assert a.get("public", IP("10.0.0.20")) is None and a.problems == []  # unlocked: maybe a write in progress
    got = b.ack("public", IP("10.0.0.20"), cid(9), NOW, 60)  # b cuts the garbage off and appends
    assert encode(got) == line and path.stat().st_size == len(path.read_bytes())
    assert a.get("public", IP("10.0.0.20")) == got  # a last looked at a file of this very size


def test_failed_fsync_is_never_acknowledged(open_store, monkeypatch):
    import errno

    import bootsrv.leases.files as files

    store = open_store()
    real = files.os.fdatasync
    calls = []

    def failing_once(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "simulated I/O error")
        real(fd)

    monkeypatch.setattr(files.os, "fdatasync", failing_once)
    with pytest.raises(OSError, match="simulated"):
        store.ack("public", IP("10.0.0.10"), cid(1), NOW, 60)
    # the next commits are synced by a later flush and acknowledged
    assert store.ack("public", IP("10.0.0.11"), cid(2), NOW, 60).client_id == cid(2)
    assert store.ack_pending("public", IP("10.0.0.12"), cid(3), NOW, 60).result().client_id == cid(3)
    calls.clear()
    pending = store.ack_pending("public", IP("10.0.0.13"), cid(4), NOW, 60)
    with pytest.raises(OSError, match="simulated"):
        pending.result()


def test_ack_returns_only_after_an_fsync_covering_its_line(open_store, monkeypatch):
    import bootsrv.leases.files as files

    store = open_store()
    path = open_store.path / "leases.public"
    real = files.os.fdatasync
    synced = []  # file sizes an fdatasync completed for

    def recording(fd):
        size = files.os.fstat(fd).st_size
        real(fd)
        synced.append(size)

    monkeypatch.setattr(files.os, "fdatasync", recording)
    for i in range(5):
        store.offer("public", cid(i), NOW, 30)  # appended, not waited for
        store.ack("public", IP(f"10.0.0.{10 + i}"), cid(i), NOW, 60)
        assert synced and max(synced) >= path.stat().st_size  # the ACK's line is at the end
    pending = [store.ack_pending("public", IP(f"10.0.0.{10 + i}"), cid(i), NOW + 1, 60) for i in range(5)]
    end = path.stat().st_size
    for p in pending:
        p.result()
    assert max(synced) >= end


def test_compactions_leak_no_descriptors(open_store):
    a, b = open_store(), open_store((B,))
    ip = lease(a, 1).ip

    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    for j in range(5):  # settle: flusher threads, lazily opened files
        a.compact()
        b.ack("public", ip, cid(1), NOW + j, 60)
    before = open_fds()
    for j in range(50):
        a.compact()  # b's table file is replaced under it each time
        b.ack("public", ip, cid(1), NOW + 10 + j, 60)
        b.ack_pending("public", ip, cid(1), NOW + 10 + j, 61).result()
        a.rescan()
    assert open_fds() <= before + 2
    assert open_store().get("public", ip) == b.get("public", ip)


@pytest.mark.parametrize("striped", [True, False])
def test_processes_of_one_server_hold_offers_in_their_own_stripes(tmp_path, striped):
    """dhcp.processes: two handles of server A on one directory, each holding its offers in memory
    for its own clients. With stripes they never offer the same free address, so every ACK
    commits; without them (the control case) both offer the same addresses."""

    def handle(k):
        return FileStore(tmp_path / "store", POOLS, (A,), offers_in_memory=True, stripe=(k, 2) if striped else (0, 1))

    first, second = handle(0), handle(1)
    try:
        offers = [(store, cid(100 * k + i)) for i in range(5) for k, store in enumerate((first, second))]
        offers = [(store, client, store.offer("public", client, NOW, 30).ip) for store, client in offers]
        ips = [ip for _store, _client, ip in offers]
        if not striped:
            assert len(set(ips)) == 5  # each address offered twice: half of these ACKs would be NAKed
            return
        assert sorted(ips) == [IP(f"10.0.0.{n}") for n in range(10, 20)]  # all of A's range, once
        for k, store in enumerate((first, second)):
            assert {int(ip) % 2 for s, _client, ip in offers if s is store} == {k}
        for store, client, ip in offers:
            assert store.ack("public", ip, client, NOW, 3600).client_id == client
    finally:
        first.close()
        second.close()


def test_a_stripe_out_of_range_is_refused(tmp_path):
    from bootsrv.errors import InvalidInput

    with pytest.raises(InvalidInput, match="stripe"):
        FileStore(tmp_path / "store", POOLS, (A,), stripe=(2, 2))


def test_a_process_whose_stripe_is_full_lends_from_the_others(tmp_path):
    """MACs do not spread evenly over dhcp.processes: when a handle's stripe has no free address
    left it takes one from another stripe rather than turning the client away (PoolExhausted)
    while the pool has room; its own stripe still comes first."""
    first = FileStore(tmp_path / "store", POOLS, (A,), offers_in_memory=True, stripe=(0, 2))
    try:
        ips = [first.offer("public", cid(i), NOW, 30).ip for i in range(7)]
        assert [int(ip) % 2 for ip in ips[:5]] == [0] * 5  # its own stripe: 10.0.0.10, 12, ... 18
        assert len(set(ips)) == 7 and all(int(ip) % 2 == 1 for ip in ips[5:])
        for i, ip in enumerate(ips):
            first.ack("public", ip, cid(i), NOW, 3600)
        more = [first.offer("public", cid(i), NOW, 30).ip for i in (7, 8, 9)]
        assert len(set(ips + more)) == 10  # the whole range, once each
    finally:
        first.close()
