"""The lease store on files: one directory that the servers of a pair open at once (NFS in
production). The format, the locking and the crash rules are written down in docs/lease-store.md;
this module owns the directory (which file is which), each handle's view of its tables, the write
protocol, the owners file (adoptions) and compaction. The bytes of a line are
bootsrv.leases.codec's, the lock files bootsrv.leases.locks', the fsyncs bootsrv.leases.commit's.

Per network `leases.<network>`: a version header, then one line per write, appended, never
rewritten in place (compaction replaces the whole file by rename). Its lock file
`leases.<network>.lock` is never unlinked (bootsrv.leases.locks). On NFS the writer also locks the
table file itself: the Linux NFS client drops its cached pages and attributes of a file when it
is locked, and writes them back when unlocked, which is what makes another host's appends
visible at the right size.

A write, under the lock: catch up with what other processes appended since this handle last
looked (only the new bytes), check the record's signature (compare-and-swap), append one line,
unlock. Durability is separate and shared (group commit, `GroupCommit`): `_sync` returns once an
fdatasync issued after the append has completed; the first to wait leads a flush for everyone
who wrote before it, and whoever comes while it runs waits for the next (see GroupCommit).

Compaction rewrites the live records into a new file (fsync), bumps a generation number kept in
the lock file (fsync), renames the new file over the old one and fsyncs the directory, all under
the lock. A handle that still has the old file open notices under the lock (generation, or the old
inode has no link) or without it (the path names another inode) and reloads.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address
from pathlib import Path

from bootsrv.leases.codec import (
    OWNERS_HEADER,
    StoreCorrupt,
    decode,
    decode_adoption,
    encode,
    encode_adoption,
    header_end,
    table_header,
    tombstone,
)
from bootsrv.leases.commit import GroupCommit
from bootsrv.leases.locks import Gate, close_gate, fsync_directory, on_nfs, open_gate
from bootsrv.leases.model import Collision, Pool, Record, Table, evolve
from bootsrv.leases.rules import TableRules
from bootsrv.leases.store import LeaseStore
from bootsrv.log import event

__all__ = ["FileStore", "StoreCorrupt"]

logger = logging.getLogger("bootsrv.leases")

TABLE_PREFIX = "leases."
OWNERS_NAME = "leases.owners"
# Adoptions made by this process (bumped after each): its other handles re-read the owners file
# on their next look instead of waiting for OWNERS_RECHECK.
_ADOPTIONS = [0]
# Compact a table in the background once it has this many more lines than twice its records.
AUTO_COMPACT_SLACK = 50_000
STALE_COMPACTION = 600  # seconds after which a compactor's temp file is surely abandoned
MAX_PROBLEMS = 1000  # damaged lines a handle lists in `problems` (all are logged)
FRESH_FOR = 0.001  # seconds a handle's view of a table is used without a look at the file
OWNERS_RECHECK = 1.0  # seconds between looks at the owners file (an adoption is a rare admin act)
_monotonic = time.monotonic


class _Log:
    """This handle's view of one network's table file."""

    __slots__ = (
        "network",
        "path",
        "gate",
        "fd",
        "ino",
        "offset",
        "generation",
        "table",
        "held",
        "retired",
        "lines",
        "looked",
        "epoch",
        "rules",
    )

    def __init__(self, network: str, path: Path, gate: Gate, rules: TableRules):
        self.network, self.path, self.gate = network, path, gate
        self.rules = rules  # what a line must obey to be applied (bootsrv.leases.rules)
        self.fd = -1
        self.ino = 0
        self.offset = 0  # bytes applied: always the end of a complete line
        self.generation = 0
        self.lines = 0  # record lines in the file (live or not): when to compact
        self.looked = -1.0  # monotonic time of the last look at the file
        self.epoch = -1  # gate.epoch at that look
        self.table = Table()
        self.held: list[int] = []  # table descriptors locked for NFS coherence, unlocked with the gate
        # Descriptors of files compacted away, handed to GroupCommit.retire once no NFS lock of
        # this handle is on them (it closes them when no flush needs them any more).
        self.retired: list[int] = []


class FileStore(LeaseStore):
    """The lease store over one directory; see the module doc and docs/lease-store.md."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        pools: Mapping[str, Pool],
        owner_ips: Iterable[IPv4Address],
        *,
        nfs: bool | None = None,
        offers_in_memory: bool = False,
        stripe: tuple[int, int] = (0, 1),
    ):
        """`nfs`: take the NFS precautions (see the module doc); None = when the directory is on
        an NFS mount. Forcing them on a local directory is how tests exercise that path."""
        super().__init__(pools, owner_ips, offers_in_memory=offers_in_memory, stripe=stripe)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.problems: list[str] = []  # torn or corrupt lines seen by this handle, for the operator
        self.nfs = on_nfs(self.directory) if nfs is None else nfs
        self._commit = GroupCommit()
        self._logs: dict[str, _Log] = {}
        self._owners_gate = open_gate(self.directory / (OWNERS_NAME + ".lock"))
        self._owners_path = self.directory / OWNERS_NAME
        self._owners: dict[IPv4Address, IPv4Address] = {}
        self._owners_stat: tuple[int, int] | None = None
        self._owners_checked = 0.0
        self._adoptions_seen = -1
        self._closed = False
        self._compactor: threading.Thread | None = None
        self._compactor_guard = threading.Lock()
        try:
            for name in self.pools:
                self._logs[name] = self._open(name)
            self._load_owners()
        except BaseException:
            self.close()
            raise

    # ---- opening and reading ----------------------------------------------------------------
    def _open(self, network: str) -> _Log:
        path = self.directory / f"{TABLE_PREFIX}{network}"
        log = _Log(
            network, path, open_gate(self.directory / f"{TABLE_PREFIX}{network}.lock"), TableRules(self.pools[network])
        )
        log.gate.lock()
        try:
            if not path.exists():
                self._create(path, table_header(network))
            self._reload(log, log.gate.generation(), locked=True)
        finally:
            log.gate.unlock()
        return log

    def _create(self, path: Path, header: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, header)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_directory(self.directory)

    def _reload(self, log: _Log, generation: int, locked: bool) -> int:
        """Read the table file from the start (first open, or another handle compacted it)."""
        fd = os.open(log.path, os.O_RDWR)
        try:
            st = os.fstat(fd)
            data = _read_all(fd, st.st_size)
            first = header_end(log.path, data)
            old = log.table
            records, offset = self._load(log, data, first)
            table = Table.of(records)
        except BaseException:
            os.close(fd)
            raise
        changed = _difference(old, table) if old.records else len(records)
        if log.fd >= 0:
            log.retired.append(log.fd)
        log.fd, log.ino, log.generation, log.table = fd, st.st_ino, generation, table
        log.offset = offset
        log.lines = data.count(b"\n", first, offset)
        if locked and log.offset < len(data):
            self._torn(log, data[log.offset :])
        return changed

    def _load(self, log: _Log, data: bytes, start: int) -> tuple[dict[IPv4Address, Record], int]:
        """The records of a whole file (last line per address wins) and the end of its last
        complete line. `_apply` without the per-line index upkeep: the open of a big table is
        dominated by hashing IPv4Address (Python code), so each line hashes its address once."""
        end = data.rfind(b"\n") + 1
        records: dict[IPv4Address, Record] = {}
        if end <= start:
            return records, start
        network = log.network
        rules = log.rules
        pos = start
        for line in data[start : end - 1].split(b"\n"):
            try:
                ip, rec = decode(network, line)
            except (ValueError, UnicodeDecodeError) as exc:
                self._problem(log, pos, f"{exc}; line skipped", line)
            else:
                if rec is None:
                    records.pop(ip, None)
                elif (found := rules.broken(rec)) is not None:
                    self._problem(log, pos, f"{found}; line skipped", line)
                else:
                    records[ip] = rec
            pos += len(line) + 1
        return records, end

    def _apply(self, log: _Log, data: bytes, start: int) -> int:
        """Apply the complete lines of data[start:] to log.table; advance log.offset past them.
        Returns how many addresses changed."""
        end = data.rfind(b"\n") + 1
        if end <= start:
            return 0
        network, table = log.network, log.table
        rules = log.rules
        records = table.records
        changed = set()
        pos = start
        base = log.offset - start
        for line in data[start : end - 1].split(b"\n"):
            try:
                ip, rec = decode(network, line)
            except (ValueError, UnicodeDecodeError) as exc:
                self._problem(log, base + pos, f"{exc}; line skipped", line)
            else:
                if rec is not None and (found := rules.broken(rec)) is not None:
                    # It passed its checksum but breaks a record rule (written by hand, by an
                    # older bootsrv, or the network's subnet changed): never served.
                    self._problem(log, base + pos, f"{found}; line skipped", line)
                elif rec is None:
                    if ip in records:
                        table.drop(ip)
                        changed.add(ip)
                else:
                    old = records.get(ip)
                    if old is None or old.signature != rec.signature:
                        table.put(rec)
                        changed.add(ip)
            pos += len(line) + 1
        log.offset = base + end
        log.lines += data.count(b"\n", start, end)
        return len(changed)

    def _problem(self, log: _Log, offset: int, what: str, raw: bytes) -> None:
        text = f"{log.path}: byte {offset}: {what}"
        if len(self.problems) < MAX_PROBLEMS:  # every one is also logged; the list is a summary
            self.problems.append(text)
        event(
            logger,
            "lease.store.corrupt",
            logging.WARNING,
            file=str(log.path),
            offset=offset,
            problem=what,
            sample=raw[:80].decode(errors="replace"),
        )

    def _torn(self, log: _Log, tail: bytes) -> None:
        """Under the lock a line without its newline is no write in progress but a writer that
        died mid-append (or a crash that lost the end of a page): report it and cut it off, so the
        next line starts on a line of its own. Nobody applied it: readers only take whole lines."""
        self._problem(log, log.offset, f"torn tail of {len(tail)} bytes (a writer died mid-append); cut off", tail)
        os.ftruncate(log.fd, log.offset)

    def _catch_up_locked(self, log: _Log) -> int:
        """Under the lock: make log.table exactly what the file says (cheap when nothing changed)."""
        changed = 0
        if self.nfs:
            # The old file may live on as .nfsXXXX with a link: only the generation tells.
            generation = log.gate.generation()
            if generation != log.generation:
                changed = self._reload(log, generation, locked=True)
        else:
            generation = log.generation
        if self.nfs and log.fd not in log.held:
            # NFS cache coherence (see the module doc): lock the table file itself too; the
            # client then revalidates its size and pages, and writes ours back on unlock.
            fcntl.lockf(log.fd, fcntl.LOCK_EX)
            log.held.append(log.fd)
        st = os.fstat(log.fd)
        if st.st_nlink == 0:  # compacted away (a local file system: the rename unlinked our inode)
            return changed + self._reload(log, log.gate.generation(), locked=True)
        size = st.st_size
        if size == log.offset:
            return changed
        if size < log.offset:
            return changed + self._reload(log, generation, locked=True)
        data = os.pread(log.fd, size - log.offset, log.offset)
        changed += self._apply(log, data, 0)
        if log.offset < size:
            self._torn(log, data[log.offset - (size - len(data)) :])
        return changed

    def _catch_up(self, log: _Log) -> int:
        changed = self._look(log)
        if log.retired:
            self._retire(log)  # no lock of ours is on them outside the critical section
        return changed

    def _look(self, log: _Log) -> int:
        """Without the lock (caller holds the gate's mutex): new complete lines, or a reload when
        the file was compacted away (locally its inode lost its last link; on NFS, where the
        client keeps an unlinked open file as .nfsXXXX, the path names another inode)."""
        if self.nfs:
            try:
                st = os.stat(log.path)
            except FileNotFoundError:
                return 0  # between a compactor's rename steps on some NFS servers; look again later
            moved = st.st_ino != log.ino
        else:
            st = os.fstat(log.fd)  # no path lookup: the cheapest "anything new?" there is
            moved = st.st_nlink == 0
        if moved:
            return self._reload(log, log.gate.generation(), locked=False)
        size = st.st_size
        # Compared with the applied offset, not with the size last seen: a torn tail cut off and
        # replaced by a line of the same length would leave the size as it was.
        if size == log.offset:
            return 0
        if size < log.offset:
            return self._reload(log, log.gate.generation(), locked=False)
        return self._apply(log, os.pread(log.fd, size - log.offset, log.offset), 0)

    # ---- primitives -------------------------------------------------------------------------
    def _table(self, network: str) -> Table:
        log = self._logs[network]
        gate = log.gate
        now = _monotonic()
        # Look at the file unless this handle looked less than FRESH_FOR ago and no handle of
        # this process changed the table since: at thousands of commits a second that saves a
        # system call (and a GIL hand-off) per commit, and another process' write is seen at
        # most FRESH_FOR later (its compare-and-swap under the lock is what keeps writes safe).
        if gate.epoch != log.epoch or now - log.looked > FRESH_FOR:
            # A writer of this process holds the mutex: it catches up under the lock anyway, and
            # the compare-and-swap protects any decision taken on what we have.
            if gate.mutex.acquire(blocking=False):
                try:
                    self._catch_up(log)
                    log.looked, log.epoch = now, gate.epoch
                finally:
                    gate.mutex.release()
        if now - self._owners_checked > OWNERS_RECHECK or _ADOPTIONS[0] != self._adoptions_seen:
            self._load_owners()  # an adoption changes which addresses this handle lends
        return log.table

    def _append(self, log: _Log, line: bytes) -> int:
        """Append under the lock; returns the group-commit number of the write."""
        n = os.pwrite(log.fd, line, log.offset)
        if n != len(line):  # ENOSPC mid-line: cut the fragment off, nothing was written
            os.ftruncate(log.fd, log.offset)
            raise OSError(errno.ENOSPC, f"{log.path}: short write ({n} of {len(line)} bytes)")
        log.offset += n
        log.lines += 1
        # This handle caught up under the lock and wrote the last line: it is current. Other
        # handles of this process see the epoch move and look at the file.
        gate = log.gate
        gate.epoch += 1
        log.epoch, log.looked = gate.epoch, _monotonic()
        return self._commit.written(log.fd)

    def _unlock(self, log: _Log) -> None:
        try:
            while log.held:
                fcntl.lockf(log.held.pop(), fcntl.LOCK_UN)  # NFS: writes our appends back first
            self._retire(log)
        finally:
            log.gate.unlock()

    def _retire(self, log: _Log) -> None:
        while log.retired:
            self._commit.retire(log.retired.pop())

    def _write(self, record: Record, expect: int) -> tuple[Record, object]:
        log = self._logs[record.network]
        # The line is made before the lock: only the compare-and-swap needs the table, and the
        # shorter the lock is held the less the other processes of the pair wait for it.
        stored = evolve(record, signature=random.getrandbits(62) | 1)
        line = encode(stored)
        log.gate.lock()
        try:
            self._catch_up_locked(log)
            current = log.table.records.get(record.ip)
            found = current.signature if current is not None else 0
            if found != expect:
                raise Collision(record.network, record.ip, expect, found)
            seq = self._append(log, line)
            log.table.put(stored)
        finally:
            self._unlock(log)
        self._maybe_compact(log)
        return stored, seq

    def _erase(self, network: str, ip: IPv4Address, expect: int) -> object:
        log = self._logs[network]
        log.gate.lock()
        try:
            self._catch_up_locked(log)
            current = log.table.records.get(ip)
            found = current.signature if current is not None else 0
            if found != expect:
                raise Collision(network, ip, expect, found)
            seq = self._append(log, tombstone(ip))
            log.table.drop(ip)
        finally:
            self._unlock(log)
        return seq

    def _sync(self, token: object) -> None:
        self._commit.wait(token)  # type: ignore[arg-type]

    def rescan(self) -> int:
        changed = 0
        for log in self._logs.values():
            with log.gate.mutex:
                changed += self._catch_up(log)
        return changed + self._load_owners()

    # ---- ownership ----------------------------------------------------------------------------
    def adoptions(self) -> dict[IPv4Address, IPv4Address]:
        return self._owners

    def _load_owners(self) -> int:
        self._owners_checked = _monotonic()
        self._adoptions_seen = _ADOPTIONS[0]
        try:
            st = os.stat(self._owners_path)
        except FileNotFoundError:
            return 0
        if (st.st_ino, st.st_size) == self._owners_stat:
            return 0
        data = self._owners_path.read_bytes()
        owners: dict[IPv4Address, IPv4Address] = {}
        end = data.rfind(b"\n") + 1
        for number, line in enumerate(data[:end].split(b"\n")[:-1], 1):
            if line.startswith(b"#"):
                continue
            try:
                peer, heir = decode_adoption(line)
            except ValueError as exc:
                text = f"{self._owners_path}: line {number}: {exc}; skipped"
                self.problems.append(text)
                event(logger, "lease.store.corrupt", logging.WARNING, file=str(self._owners_path), line=number)
            else:
                owners[peer] = heir
        changed = len(set(owners.items()) ^ set(self._owners.items()))
        self._owners = owners  # replaced whole: readers iterate the old dict safely
        self._owners_stat = (st.st_ino, st.st_size)
        return changed

    def _record_adoption(self, peer: IPv4Address, heir: IPv4Address) -> None:
        gate = self._owners_gate
        gate.lock()
        try:
            if not self._owners_path.exists():
                self._create(self._owners_path, OWNERS_HEADER)
            fd = os.open(self._owners_path, os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                data = os.pread(fd, size, 0)
                good = data.rfind(b"\n") + 1
                if good < size:
                    os.ftruncate(fd, good)  # a torn adoption line: the adopter died; cut it off
                os.pwrite(fd, encode_adoption(peer, heir), good)
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            gate.unlock()
        _ADOPTIONS[0] += 1  # other handles of this process look at once; other processes within OWNERS_RECHECK
        self._load_owners()

    # ---- maintenance ------------------------------------------------------------------------
    def compact(self, network: str | None = None) -> dict[str, tuple[int, int]]:
        """Rewrite tables with one line per address; {network: (bytes before, bytes after)}.
        A table another handle compacted meanwhile is left to it (and not in the result)."""
        out = {}
        for name in [network] if network is not None else list(self._logs):
            self.pool(name)
            result = self._compact(self._logs[name])
            if result is not None:
                out[name] = result
        return out

    def _compact(self, log: _Log) -> tuple[int, int] | None:
        # The new file is written from a snapshot without the lock (encoding a big table takes
        # long, see docs/lease-store.md "Compaction": DHCP must not wait for it); under the lock
        # only the lines appended since the snapshot are copied over before the swap.
        with log.gate.mutex:
            self._catch_up(log)
            records = sorted(log.table.records.values(), key=lambda r: int(r.ip))
            since, ino = log.offset, log.ino
        tmp = log.path.with_name(f".{log.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        tfd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        swapped = False
        try:
            _write_all(tfd, b"".join([table_header(log.network), *map(encode, records)]))
            log.gate.lock()
            try:
                self._catch_up_locked(log)
                if log.ino != ino:
                    return None  # another handle compacted it meanwhile
                before = log.offset
                delta = os.pread(log.fd, before - since, since) if before > since else b""
                _write_all(tfd, delta)
                os.fsync(tfd)
                # Generation first (and on disk): whatever instant this process dies at, a handle
                # that finds the generation unchanged still has the current file open.
                generation = log.gate.generation() + 1
                log.gate.set_generation(generation)
                os.rename(tmp, log.path)
                swapped = True
                fsync_directory(self.directory)
                # The new file holds exactly what this handle has applied: switch without a re-read.
                st = os.fstat(tfd)
                log.retired.append(log.fd)
                log.fd, log.ino, log.generation = tfd, st.st_ino, generation
                log.offset = st.st_size
                log.lines = len(records) + delta.count(b"\n")
                log.gate.epoch += 1
            finally:
                self._unlock(log)
        finally:
            if not swapped:
                os.close(tfd)
                tmp.unlink(missing_ok=True)
        self._remove_stale(log)
        event(
            logger,
            "lease.store.compacted",
            network=log.network,
            before=before,
            after=log.offset,
            records=len(log.table.records),
        )
        return before, log.offset

    def _remove_stale(self, log: _Log) -> None:
        """Temp files of compactors that died before their rename (old enough not to be live)."""
        for stale in self.directory.glob(f".{log.path.name}.*.new"):
            try:
                if time.time() - stale.stat().st_mtime > STALE_COMPACTION:
                    stale.unlink()
            except FileNotFoundError:
                pass

    def _maybe_compact(self, log: _Log) -> None:
        """Start a background compaction when dead lines outweigh the live ones (every renewal
        appends a line: a busy table would otherwise grow without end, and so would start-up)."""
        if log.lines <= 2 * len(log.table.records) + AUTO_COMPACT_SLACK or self._compactor is not None:
            return
        with self._compactor_guard:
            if self._compactor is not None or self._closed:
                return

            def run() -> None:
                try:
                    self._compact(log)
                except Exception as exc:  # noqa: BLE001 - logged; the table stays as it is
                    event(logger, "lease.store.compact_failed", logging.ERROR, network=log.network, error=repr(exc))
                finally:
                    self._compactor = None

            self._compactor = threading.Thread(target=run, name=f"leases-compact-{log.network}", daemon=True)
            self._compactor.start()

    def close(self) -> None:
        if self._closed:
            return
        with self._compactor_guard:
            self._closed = True
            compactor = self._compactor
        if compactor is not None:
            compactor.join()
        self._commit.close()
        for log in self._logs.values():
            for fd in [log.fd, *log.retired]:
                if fd >= 0:
                    os.close(fd)
            log.fd, log.retired = -1, []
            close_gate(log.gate)
        close_gate(self._owners_gate)


def _read_all(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, max(size - offset, 1 << 16), offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _difference(old: Table, new: Table) -> int:
    changed = sum(
        1 for ip, rec in new.records.items() if (o := old.records.get(ip)) is None or o.signature != rec.signature
    )
    return changed + sum(1 for ip in old.records if ip not in new.records)
