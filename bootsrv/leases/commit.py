"""Group commit: durability for many writers of the lease store with few fsyncs.

A DHCPACK goes out only after its lease is on stable storage (docs/lease-store.md, "Durability").
Writers append their lines under the table's lock and number the write here (`written`); `wait`
returns once an fdatasync that began after that write has completed. The first to wait leads a
flush for everyone who wrote before it, and whoever comes while it runs waits for the next.
This module owns only that bookkeeping and the fdatasyncs; what is written where is
bootsrv.leases.files'.
"""

from __future__ import annotations

import logging
import os
import threading

from bootsrv.log import event

logger = logging.getLogger("bootsrv.leases")


class _Waiter:
    """A committer blocked in `GroupCommit.wait`: its lock is held until its flush is done."""

    __slots__ = ("lock", "error")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.error: BaseException | None = None


class GroupCommit:
    """Durability for many writers with few fsyncs.

    A write is numbered (`written`) after its bytes are in the file; a flush takes every
    descriptor written so far and fdatasyncs them without the mutex (writers keep appending
    meanwhile, and their lines ride the next flush), so one fsync covers everyone who wrote
    before it began. Who flushes:
    - a committer in `wait(n)` when no flush is running does it itself (the leader): no thread
      switch when it commits alone, and the DHCP loop, which writes a batch of ACKs and then
      waits for each in turn, pays one fsync per batch (the first wait leads it, the others
      find it done) and no GIL hand-off at all;
    - otherwise the flusher thread (started on first use) flushes for all that queued behind
      the running flush and releases each one's own lock.
    Each waiter is woken on its own, not by a broadcast: with 64 committers a shared condition
    woke 63 threads for nothing after every flush.
    """

    def __init__(self, name: str = "leases"):
        lock = threading.Lock()
        self._wake = threading.Condition(lock)  # work for the flusher
        self._flushed = threading.Condition(lock)  # a flush ended
        self._flushing = False
        self._written = 0
        self._durable = 0
        self._dirty: set[int] = set()
        self._retired: list[int] = []
        self._pending: list[tuple[int, _Waiter]] = []  # (write number, who waits for it)
        self._pending_max = 0
        self._failed: dict[tuple[int, int], BaseException] = {}  # (after, upto] -> why that flush failed
        self._thread: threading.Thread | None = None
        self._closed = False
        self._name = name
        self.flushes = 0

    def written(self, fd: int) -> int:
        with self._wake:
            self._written += 1
            self._dirty.add(fd)
            return self._written

    def retire(self, fd: int) -> None:
        """`fd` gets no more writes (its file was compacted away): close it now, or after the
        flush that still has to sync it or is syncing it right now."""
        with self._wake:
            if self._flushing or fd in self._dirty:
                self._retired.append(fd)
                return
        os.close(fd)

    def _flush_locked(self) -> None:
        """One flush of everything written so far; called with the mutex held and no flush running."""
        target, dirty = self._written, self._dirty
        self._dirty = set()
        self._flushing = True
        self._wake.release()
        error = None
        try:
            for fd in dirty:
                os.fdatasync(fd)
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: these writes are
            # not durable and must not be acknowledged (their waiters get the error).
            error = exc
            event(logger, "lease.store.fsync_failed", logging.ERROR, error=str(exc))
        finally:
            self._wake.acquire()
            self._flushing = False
            self.flushes += 1
        if error is not None:
            self._failed[(self._durable, target)] = error
            if len(self._failed) > 64:  # waiters of old failed flushes have long been told
                del self._failed[min(self._failed)]
        self._durable = max(self._durable, target)
        if self._retired:  # retired before or during this flush: done with unless written since
            keep = [fd for fd in self._retired if fd in self._dirty]
            for fd in self._retired:
                if fd not in self._dirty:
                    os.close(fd)
            self._retired = keep
        self._flushed.notify_all()

    def _error_for(self, seq: int) -> BaseException | None:
        for (after, upto), error in self._failed.items():
            if after < seq <= upto:
                return error
        return None

    def wait(self, seq: int | None) -> None:
        if not seq:
            return
        waiter = None
        error = None
        with self._wake:
            while self._durable < seq:
                if not self._flushing:
                    self._flush_locked()  # lead: nobody is flushing
                    if self._pending:
                        self._wake.notify()  # the flusher resolves (or flushes for) the queued ones
                else:
                    # Someone is flushing: queue behind it. A bare lock the flusher releases: a
                    # Condition per waiter costs more per commit (docs/lease-store.md,
                    # "Measurements behind the code").
                    waiter = _Waiter()
                    self._enqueue(seq, waiter)
                    break
            else:
                error = self._error_for(seq) if self._failed else None
        if waiter is not None:
            waiter.lock.acquire()
            error = waiter.error
        if error is not None:
            raise error

    def _enqueue(self, seq: int, waiter: _Waiter) -> None:
        """With the mutex held: `waiter` is released after `seq`'s flush."""
        if not self._pending:
            self._wake.notify()
        self._pending.append((seq, waiter))
        if seq > self._pending_max:
            self._pending_max = seq
        if self._thread is None:
            self._thread = threading.Thread(target=self._flusher, name=f"{self._name}-flusher", daemon=True)
            self._thread.start()

    def _flusher(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending:
                    return
                if self._flushing:  # a committer is leading a flush: see what it covered first
                    self._flushed.wait()
                    continue
                if self._durable < self._pending_max:
                    self._flush_locked()
                durable = self._durable
                if self._pending_max <= durable:
                    ready, self._pending = self._pending, []
                else:
                    ready = [p for p in self._pending if p[0] <= durable]
                    self._pending = [p for p in self._pending if p[0] > durable]
                for seq, waiter in ready:
                    waiter.error = self._error_for(seq) if self._failed else None
            for _seq, waiter in ready:
                waiter.lock.release()

    def close(self) -> None:
        """Flush what is left and stop the flusher (waiters still pending are resolved first)."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        with self._wake:
            while self._flushing:
                self._flushed.wait()
            if self._written > self._durable:
                self._flush_locked()
            for fd in self._retired:
                os.close(fd)
            self._retired = []
