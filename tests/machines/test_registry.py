"""Registries: compare-and-swap, two file registries on one directory, concurrent writers."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading

import pytest
from machines_builders import MAC, NOW, OTHER_MAC, facts, machine

from bootsrv.errors import Conflict
from bootsrv.machines.model import MemoryRegistry, StaleWrite, State, from_record, to_record, update
from bootsrv.machines.store import FILE_NAME, HEADER, LOCK_NAME, FileRegistry, RegistryCorrupt


@pytest.fixture(params=["memory", "file"])
def any_registry(request, tmp_path):
    return MemoryRegistry() if request.param == "memory" else FileRegistry(tmp_path / "store")


def test_put_get_list(any_registry):
    assert any_registry.get(MAC) is None and any_registry.list() == []
    stored = any_registry.put(machine(), None)
    assert stored.revision == 1
    assert any_registry.get(MAC) == stored
    any_registry.put(machine(OTHER_MAC, hostname="hv2"), None)
    assert [m.mac for m in any_registry.list()] == [MAC, OTHER_MAC]


@pytest.mark.parametrize(
    ("expected", "rule"),
    [(None, "already exists"), (0, "changed meanwhile"), (2, "changed meanwhile")],
    ids=["create-existing", "stale-0", "future-2"],
)
def test_compare_and_swap_refuses_stale_writers(any_registry, expected, rule):
    first = any_registry.put(machine(), None)
    with pytest.raises(StaleWrite, match=rule):
        any_registry.put(dataclasses.replace(first, hostname="other"), expected)
    assert any_registry.get(MAC) == first  # unchanged


def test_update_of_removed_machine(any_registry):
    stored = any_registry.put(machine(), None)
    any_registry.remove(MAC, stored.revision)
    assert any_registry.get(MAC) is None
    with pytest.raises(StaleWrite, match="removed meanwhile"):
        any_registry.put(stored, stored.revision)


def test_record_round_trip_keeps_every_field():
    from bootsrv.machines.enrollment import parse_facts
    from bootsrv.machines.model import Token

    full = machine(
        state=State.ENROLLED,
        guid="01234567-89ab-cdef-0123-456789abcdef",
        serial="SN1",
        arch="efi-x64",
        vendor_class="PXEClient:Arch:00007:UNDI:003016",
        addresses=(("backend", "10.1.0.5"), ("public", "192.0.2.5")),
        segment="odd",
        comment="rack 3",
        facts=parse_facts(facts()),
        libvirt_uri="qemu+ssh://hv1/system",
        drained=True,
        tokens=(Token("ab" * 32, NOW, NOW + 60, True),),
        enrolled_at=NOW + 5,
        revision=7,
    )
    assert from_record(to_record(full)) == full
    assert "digest" not in str(to_record(full, secrets=False))


def test_two_file_registries_on_one_directory_agree(tmp_path):
    a, b = FileRegistry(tmp_path), FileRegistry(tmp_path)
    assert b.list() == []  # b caches "no file"
    stored = a.put(machine(), None)
    assert b.get(MAC) == stored
    changed = b.put(dataclasses.replace(stored, comment="from b"), stored.revision)
    assert a.get(MAC).comment == "from b" and a.get(MAC).revision == changed.revision == 2
    # a's cached revision is stale: its write collides instead of overwriting b's.
    with pytest.raises(StaleWrite):
        a.put(dataclasses.replace(stored, comment="from a"), stored.revision)
    assert b.get(MAC).comment == "from b"


def test_many_quick_writes_are_all_seen(tmp_path):
    # Same size, same second: the cache must not mistake a new file for the old one.
    a, b = FileRegistry(tmp_path), FileRegistry(tmp_path)
    a.put(machine(comment="x0"), None)
    for i in range(1, 30):
        assert b.get(MAC).comment == f"x{i - 1}"
        update(a, MAC, lambda m, i=i: dataclasses.replace(m, comment=f"x{i}"))
        assert b.get(MAC).comment == f"x{i}"


def test_file_format_is_versioned_and_greppable(tmp_path):
    reg = FileRegistry(tmp_path)
    reg.put(machine(), None)
    reg.put(machine(OTHER_MAC, hostname="hv2"), None)
    lines = (tmp_path / FILE_NAME).read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 3
    assert MAC in lines[1] and OTHER_MAC in lines[2]
    assert (tmp_path / LOCK_NAME).exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("# bootsrv machines v9\n", ":1: expected header"),
        (HEADER + "\n{not json\n", ":2: not JSON"),
        (HEADER + '\n{"mac": "52:54:00:12:34:56"}\n', ":2: hostname: required field is missing"),
        (HEADER + '\n{"mac": "zz", "hostname": "a", "state": "new", "profile": "p"}\n', ":2: mac: "),
        (
            HEADER + '\n{"mac": "52:54:00:12:34:56", "hostname": "a", "state": "bogus"}\n',
            ":2: machine: record does not fit",
        ),
    ],
    ids=["version", "json", "missing", "mac", "state"],
)
def test_corrupt_file_is_reported_not_guessed(tmp_path, text, where):
    (tmp_path / FILE_NAME).write_text(text)
    with pytest.raises(RegistryCorrupt, match=where):
        FileRegistry(tmp_path).list()


def test_duplicate_line_is_corrupt(tmp_path):
    reg = FileRegistry(tmp_path)
    reg.put(machine(), None)
    path = tmp_path / FILE_NAME
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(RegistryCorrupt, match="appears twice"):
        FileRegistry(tmp_path).list()


# --- concurrent writers: every increment survives --------------------------------------------

INCREMENTS = 25


def _bump(registry, worker: int) -> None:
    for _ in range(INCREMENTS):
        update(registry, MAC, lambda m: dataclasses.replace(m, comment=m.comment + str(worker % 10)))
    # and each worker creates its own machine, racing on the same file
    registry.put(machine(f"52:54:00:00:01:{worker:02x}", hostname=f"w{worker}"), None)


def test_threads_lose_no_update(any_registry):
    any_registry.put(machine(comment=""), None)
    workers = [threading.Thread(target=_bump, args=(any_registry, i)) for i in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    final = any_registry.get(MAC)
    assert len(final.comment) == 6 * INCREMENTS
    assert final.revision == 1 + 6 * INCREMENTS
    assert len(any_registry.list()) == 7


# Each child is a fresh interpreter with two FileRegistry objects used from two threads: the
# in-process mutex and the cross-process lockf lock must both hold.
CHILD = """
import dataclasses, sys, threading
from bootsrv.machines.model import Machine, State, update
from bootsrv.machines.store import FileRegistry
directory, worker = sys.argv[1], int(sys.argv[2])
def bump(reg, w):
    for _ in range(INCREMENTS):
        update(reg, "MAC", lambda m: dataclasses.replace(m, comment=m.comment + str(w % 10)))
    reg.put(Machine(mac=f"52:54:00:00:01:{w:02x}", hostname=f"w{w}", state=State.NEW, profile="p"), None)
regs = [FileRegistry(directory), FileRegistry(directory)]
threads = [threading.Thread(target=bump, args=(regs[t], worker * 2 + t)) for t in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
""".replace("INCREMENTS", str(INCREMENTS)).replace('"MAC"', repr(MAC))


def test_processes_lose_no_update(tmp_path):
    FileRegistry(tmp_path).put(machine(comment=""), None)
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(i)]) for i in range(2)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    final = FileRegistry(tmp_path).get(MAC)
    assert len(final.comment) == 4 * INCREMENTS and final.revision == 1 + 4 * INCREMENTS
    assert len(FileRegistry(tmp_path).list()) == 5


def test_update_gives_up_with_conflict():
    class AlwaysStale(MemoryRegistry):
        def put(self, m, expected):
            raise StaleWrite(m.mac, expected, 99)

    reg = AlwaysStale([machine()])
    with pytest.raises(Conflict, match="gave up"):
        update(reg, MAC, lambda m: m, attempts=3)
