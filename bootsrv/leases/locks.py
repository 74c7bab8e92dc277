"""Locks of the lease store's files: one gate per lock file and process, and the file-system facts
the locking depends on (is a directory on NFS; making a rename durable).

Writers hold an exclusive `fcntl.lockf` on `leases.<network>.lock`: POSIX byte-range locks go
through NLM on NFS, while `flock` is not honoured by every NFS client. A lock file is never
unlinked: unlinking one lets two writers lock two different inodes. POSIX locks belong to the
process, so the handles of one process share one descriptor and one mutex per lock file (`Gate`,
from `open_gate`). The lock file's first line also holds the table's generation (bumped by each
compaction, see bootsrv.leases.files).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

HANDOFF_STREAK = 32  # commits of one process in a row before its lock is really released


class Gate:
    """One process' hold on one lock file. POSIX record locks belong to the process, not the
    descriptor: a second descriptor of the same process is granted the lock at once, and closing
    any descriptor of the file drops the process' lock. So every handle in the process shares one
    descriptor, and takes `mutex` before `lockf`.

    Hand-off: a thread that unlocks while another thread of the process waits for the mutex
    leaves the process' lock in place for it (the lock is the process', so that one may go on at
    once): two system calls less per commit when several threads commit at once. At most
    HANDOFF_STREAK times in a row, then the lock is really released so the other server gets
    its turn."""

    __slots__ = ("path", "fd", "mutex", "users", "epoch", "guard", "waiting", "held", "streak")

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.mutex = threading.Lock()
        self.users = 0
        self.epoch = 0  # bumped by every change this process makes to the table: see FileStore._table
        self.guard = threading.Lock()  # for `waiting`
        self.waiting = 0  # threads blocked in lock()
        self.held = False  # the process' lock was left in place by the last holder for a waiter
        self.streak = 0  # hand-offs since the lock was last really released

    def lock(self) -> None:
        if not self.mutex.acquire(blocking=False):  # taken: count ourselves in for a hand-off
            with self.guard:
                self.waiting += 1
            self.mutex.acquire()
            with self.guard:
                self.waiting -= 1
        if self.held:
            self.held = False  # handed over: the process holds the lock already
            return
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.mutex.release()
            raise

    def unlock(self) -> None:
        try:
            if self.waiting and self.streak < HANDOFF_STREAK:
                self.streak += 1
                self.held = True
            else:
                self.streak = 0
                fcntl.lockf(self.fd, fcntl.LOCK_UN)
        finally:
            self.mutex.release()

    def generation(self) -> int:
        """Bumped by every compaction of the table (read under the lock: NFS revalidates a file's
        cache when it is locked, so this is what another host last wrote)."""
        raw = os.pread(self.fd, 32, 0)
        try:
            return int(raw.split(b"\n", 1)[0] or 0)
        except ValueError:
            return -1  # unreadable: treat as changed, reload

    def set_generation(self, generation: int) -> None:
        text = b"%d\n" % generation
        os.pwrite(self.fd, text.ljust(32, b" "), 0)
        os.fsync(self.fd)


_GATES: dict[str, Gate] = {}
_GATES_GUARD = threading.Lock()


def open_gate(path: Path) -> Gate:
    """This process' gate of the lock file `path` (created if missing), shared by its handles."""
    key = os.path.realpath(path)
    with _GATES_GUARD:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = Gate(Path(key))
        gate.users += 1
        return gate


def close_gate(gate: Gate) -> None:
    """A handle is done with `gate`; the last one of the process closes its descriptor."""
    with _GATES_GUARD:
        gate.users -= 1
        if gate.users == 0 and _GATES.get(str(gate.path)) is gate:
            del _GATES[str(gate.path)]
            os.close(gate.fd)  # nobody in this process holds or waits for it


def _forget_gates() -> None:
    # A forked child holds none of the parent's record locks (POSIX) and may have inherited a
    # mutex some other thread held: it starts over with its own gates.
    global _GATES_GUARD
    _GATES.clear()
    _GATES_GUARD = threading.Lock()


os.register_at_fork(after_in_child=_forget_gates)


def on_nfs(path: Path) -> bool:
    """Is `path` on an NFS mount (from /proc/self/mountinfo: the longest mount point above it)."""
    try:
        real = os.path.realpath(path)
        best, fstype = "", ""
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                point = left.split()[4].replace("\\040", " ")
                if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, fstype = point, right.split()[0]
        return fstype.startswith("nfs")
    except OSError:
        return False


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
