"""The file-backed machine registry, shared by the server pair through the store directory.

Format: `machines.jsonl` in `config.store.directory` (next to the lease tables), a version header
then one JSON object per machine, sorted by MAC, so `grep 52:54:00:12:34:56 machines.jsonl`
finds a machine and a diff of two copies is readable:

    # bootsrv machines v1
    {"mac": "52:54:00:12:34:56", "hostname": "hv1", "state": "enrolled", ..., "revision": 7}

Safety between processes and hosts (the same rules as the lease store, DESIGN.md):
- Writers take an exclusive `fcntl.lockf` lock on `machines.lock`, a file that is never
  unlinked (unlinking a lock file lets two writers lock two different inodes). lockf, not flock:
  NFS honours POSIX byte-range locks through NLM, flock only on some clients.
- Under the lock a writer re-reads the file, checks the revision it was given (compare-and-swap:
  a stale writer gets Conflict, never a silent overwrite), writes a temp file, fsyncs it, renames
  it over the old file and fsyncs the directory, so readers see the old or the new file whole
  and the change survives power loss before `put` returns.
- Readers need no lock (rename is atomic); they re-read whenever the file's identity (inode,
  size, mtime, ctime) differs from what they cached, so two processes agree after every write.
  On NFS, attribute caching can delay that by up to `acregmin` seconds; writers are still safe
  because they always re-read under the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from bootsrv.errors import BootsrvError, InvalidInput
from bootsrv.machines.model import Machine, apply_changes, from_record, to_record

FILE_NAME = "machines.jsonl"
LOCK_NAME = "machines.lock"
HEADER = "# bootsrv machines v1"


class RegistryCorrupt(BootsrvError):
    """The registry file cannot be read as written by bootsrv; nothing is guessed or dropped."""

    exit_code = 6
    http_status = 500

    def __init__(self, path: Path, line: int, rule: str):
        self.path, self.line, self.rule = path, line, rule
        super().__init__(f"{path}:{line}: {rule}")


# POSIX record locks belong to the process, not the file descriptor: a second thread (or a second
# FileRegistry on the same directory in this process) would be granted the lock at once, and
# closing any descriptor of the file drops the process' lock. So writers in one process also
# serialize on one mutex per lock file. This is the one module-level table in bootsrv, and it
# exists because the kernel's lock is itself per process.
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(path: Path) -> threading.Lock:
    key = os.path.realpath(path)
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(key, threading.Lock())


def parse(text: str, path: Path, known: dict[str, Machine] | None = None) -> tuple[dict[str, Machine], dict[str, str]]:
    """Machines by MAC, and each one's line as read (reused verbatim when the file is rewritten).

    `known` maps lines of the previous read to their machines: a line that did not change is
    not decoded again (after a peer's write, one machine of hundreds usually changed)."""
    known = known or {}
    lines = text.split("\n")
    if lines[0] != HEADER:
        raise RegistryCorrupt(path, 1, f"expected header {HEADER!r}, found {lines[0][:40]!r}")
    machines: dict[str, Machine] = {}
    texts: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.startswith("#"):
            continue
        machine = known.get(line)
        try:
            if machine is None:
                machine = from_record(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RegistryCorrupt(path, number, f"not JSON: {exc.msg}") from None
        except InvalidInput as exc:
            raise RegistryCorrupt(path, number, str(exc)) from None
        if machine.mac in machines:
            raise RegistryCorrupt(path, number, f"machine {machine.mac} appears twice")
        machines[machine.mac] = machine
        texts[machine.mac] = line
    return machines, texts


def format_line(machine: Machine) -> str:
    return json.dumps(to_record(machine), sort_keys=True, separators=(",", ":"))


def format_records(texts: dict[str, str]) -> str:
    return "\n".join([HEADER, *(texts[mac] for mac in sorted(texts))]) + "\n"


class FileRegistry:
    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.lock_path = self.directory / LOCK_NAME
        self._cache_lock = threading.Lock()
        self._identity: tuple[int, int, int, int] | None = None
        self._machines: dict[str, Machine] = {}
        # Each machine's line as in the file: a write serializes only the machine it changes
        # (serializing 500 hypervisors per write took 30 ms, see bench/machines_registry.py).
        self._texts: dict[str, str] = {}

    # -- reading

    def _refresh(self) -> dict[str, Machine]:
        return self._load()[0]

    def _load(self) -> tuple[dict[str, Machine], dict[str, str]]:
        """The current machines, re-read only if the file is not the one cached."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            with self._cache_lock:
                self._identity, self._machines, self._texts = None, {}, {}
                return self._machines, self._texts
        with os.fdopen(fd, "r", encoding="utf-8") as handle:
            # fstat of the descriptor we read: the identity and the content are of one file even
            # if a writer renames a new one in between.
            st = os.fstat(handle.fileno())
            identity = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            with self._cache_lock:
                if identity == self._identity:
                    return self._machines, self._texts
            with self._cache_lock:
                known = {text: self._machines[mac] for mac, text in self._texts.items()}
            machines, texts = parse(handle.read(), self.path, known)
        with self._cache_lock:
            self._identity, self._machines, self._texts = identity, machines, texts
        return machines, texts

    def get(self, mac: str) -> Machine | None:
        return self._refresh().get(mac)

    def list(self) -> list[Machine]:
        return [m for _, m in sorted(self._refresh().items())]

    # -- writing

    @contextmanager
    def _exclusive(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        with _process_lock(self.lock_path):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing drops the lock

    def _write(self, machines: dict[str, Machine], texts: dict[str, str]) -> None:
        tmp = self.directory / f".{FILE_NAME}.{os.getpid()}.{threading.get_ident()}.tmp"
        data = format_records(texts).encode("utf-8")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive power loss
        finally:
            os.close(dir_fd)
        # We still hold the lock, so the file is ours: cache what we wrote instead of re-parsing it.
        st = os.stat(self.path)
        with self._cache_lock:
            self._identity = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            self._machines, self._texts = machines, texts

    def put(self, machine: Machine, expected: int | None) -> Machine:
        return self.put_many([(machine, expected)])[0]

    def remove(self, mac: str, expected: int) -> None:
        self.put_many([], [(mac, expected)])

    def put_many(
        self, machines: Sequence[tuple[Machine, int | None]], removals: Sequence[tuple[str, int]] = ()
    ) -> Sequence[Machine]:
        """Every change in one locked rewrite of the file (one fsync of it and of the directory),
        checked against the file as it is under the lock: all or nothing."""
        with self._exclusive():
            cached, cached_texts = self._load()
            stored, gone = apply_changes(cached, machines, removals)
            if not stored and not gone:
                return []
            current, texts = dict(cached), dict(cached_texts)
            for machine in stored:
                current[machine.mac], texts[machine.mac] = machine, format_line(machine)
            for mac in gone:
                del current[mac], texts[mac]
            self._write(current, texts)
            return stored
