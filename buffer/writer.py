"""The one writer thread: group commits, the quota policy on every commit, and retention pruning.

Producers (drivers on the event loop) only append to an in-memory queue under a lock; every disk
operation happens here, so the event loop never waits on SQLite (architecture rule 5).
"""

from __future__ import annotations

import contextlib
import operator
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from buffer import chunk, quota, schema
from buffer.condition import DISK_FULL, STORAGE_ERROR, StorageCondition
from buffer.quarantine import is_corruption
from buffer.quota import GapBook
from buffer.records import GapRecord, SeriesKey, StoreOptions
from buffer.tally import Tally
from kernel.backoff import Backoff
from kernel.errors import StorageError
from kernel.model import HealthEvent, Reading
from kernel.wallclock import now_ms

#: SQLite primary result code of a full database or disk
SQLITE_FULL = 13
#: how often retention runs, and how many chunks one step deletes at most (keeps steps short)
PRUNE_EVERY_S = 10.0
PRUNE_STEP = 256
#: pause after a failed commit before trying again, doubled up to the cap
RETRY_INITIAL_S = 0.05
RETRY_CAP_S = 5.0
MAX_QUEUED_EVENTS = 10_000

_series_key = operator.attrgetter("sensor", "quantity", "unit")

Waiter = Callable[[BaseException | None], None]


@dataclass
class _Group:
    """What one commit takes from the queue."""

    readings: list[Reading] = field(default_factory=list)
    events: list[HealthEvent] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.readings) + len(self.events)


def is_full(exc: BaseException) -> bool:
    """True for SQLITE_FULL: the disk, the file system quota or max_page_count is exhausted."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (int(code) & 0xFF) == SQLITE_FULL
    return "full" in str(exc)


def _packable(r: Reading) -> bool:
    """Whether a reading has the types the chunk format stores."""
    return (
        isinstance(r.sensor, str)
        and isinstance(r.quantity, str)
        and isinstance(r.unit, str)
        and isinstance(r.ts_ms, int)
        and -(2**62) < r.ts_ms < 2**62
        and isinstance(r.value, int | float)
        and isinstance(r.quality, int)
        and 0 <= r.quality <= 0xFFFF
    )


class Writer:
    """Owns the write connection; see module docstring."""

    def __init__(self, path: Path, conn: sqlite3.Connection, options: StoreOptions, tally: Tally):
        self._path = path
        self._conn = conn
        self._options = options
        self._tally = tally
        self._cond = threading.Condition()
        self._queue: deque[Sequence[Reading]] = deque()
        self._events: list[HealthEvent] = []
        self._queued = 0
        self._submitted = 0  # items (readings + events) ever submitted
        self._processed = 0  # items committed or recorded as gaps
        self._waiters: list[tuple[int, Waiter]] = []
        self._stopping = False
        self._handing_over = False
        #: set (by the writer thread) when a commit failed because the file is corrupt
        self.corrupt: str | None = None
        self._gaps = GapBook()
        self._series: dict[SeriesKey, int] = {}
        self._load_series()
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        self._ballast = quota.Ballast.beside(path)
        # no jitter: one writer per gateway, nothing to spread
        self._retry = Backoff(initial_s=RETRY_INITIAL_S, cap_s=RETRY_CAP_S, jitter=0.0)
        self._condition = StorageCondition(options.policy, self._retry)
        self._retry_delay = 0.0
        self._ballast.ensure()
        self._thread = threading.Thread(target=self._run, name="buffer-writer", daemon=True)

    # -- producer side (any thread) ------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, readings: Sequence[Reading]) -> None:
        """Queue readings for the next group commit."""
        if not readings:
            return
        with self._cond:
            self._queue.append(readings)
            self._queued += len(readings)
            self._submitted += len(readings)
            if self._queued > self._options.max_queued_rows:
                self._overflow()
            if self._queued >= self._options.max_rows_per_commit:
                self._cond.notify()

    def submit_event(self, event: HealthEvent) -> None:
        """Queue a health event for the next group commit."""
        with self._cond:
            self._events.append(event)
            self._submitted += 1
            if len(self._events) > MAX_QUEUED_EVENTS:
                del self._events[0]
                self._processed += 1

    def request_flush(self, waiter: Waiter) -> None:
        """Commit now; call `waiter(None)` once everything submitted so far is committed."""
        with self._cond:
            if not self._thread.is_alive():
                waiter(StorageError("the buffer is closed"))
                return
            if self._processed >= self._submitted:
                waiter(None)
                return
            self._waiters.append((self._submitted, waiter))
            self._cond.notify()

    def stop(self, timeout: float | None = None) -> None:
        """Commit what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def hand_over(self) -> tuple[list[Reading], list[HealthEvent], list[GapRecord]]:
        """Stop without committing (the file is corrupt): what is queued, for the next writer.

        Flushes waiting for these items fail: their readings now wait in another writer.
        """
        with self._cond:
            self._handing_over = self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()
        with self._cond:
            readings = [r for part in self._queue for r in part]
            self._queue.clear()
            self._queued = 0
            events, self._events = self._events, []
            waiters, self._waiters = self._waiters, []
        error = StorageError("the buffer was quarantined while running; queued readings moved to a fresh one")
        for _, waiter in waiters:
            waiter(error)
        return readings, events, self._gaps.take()

    def take_over(self, readings: list[Reading], events: list[HealthEvent], gaps: list[GapRecord]) -> None:
        """Queue what another writer handed over (before start())."""
        self.submit(readings)
        for event in events:
            self.submit_event(event)
        self._gaps.restore(gaps)

    @property
    def queued(self) -> int:
        """Readings waiting for a commit."""
        return self._queued

    def _overflow(self) -> None:
        # storage has been failing for long: the oldest queued readings become gap records
        while self._queued > self._options.max_queued_rows and len(self._queue) > 1:
            lost = self._queue.popleft()
            self._queued -= len(lost)
            self._processed += len(lost)
            self._tally.add(dropped=self._gaps.add_readings(lost, quota.REASON_STORAGE))

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        # the retry series of a storage error (StorageCondition) paces the next attempt
        delay = 0.0
        while True:
            group, stop = self._next_group(delay)
            if self._handing_over:
                self._requeue(group)  # for the writer of the fresh database, not this corrupt one
                return
            ok = self._commit(group)
            delay = 0.0 if ok else self._retry_delay
            if ok:
                self._retry.reset()
                self._prune_step()
            if stop and (not ok or self._queued == 0):
                break  # closing: after a failure do not retry forever, what is left is counted
        self._give_up_queue()

    def _next_group(self, delay: float) -> tuple[_Group, bool]:
        """Wait for the commit interval, a full group, a flush or close; after a failure, `delay`."""
        with self._cond:
            if delay > 0:
                deadline = time.monotonic() + delay
                while not self._stopping and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
            else:
                deadline = time.monotonic() + self._options.commit_interval_s
                while not (
                    self._stopping or self._waiters or self._queued >= self._options.max_rows_per_commit
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            return self._take(), self._stopping

    def _take(self) -> _Group:
        group = _Group(events=self._events)
        self._events = []
        limit = self._options.max_rows_per_commit
        while self._queue and len(group.readings) < limit:
            head = self._queue.popleft()
            room = limit - len(group.readings)
            if len(head) > room:
                self._queue.appendleft(head[room:])
                head = head[:room]
            group.readings.extend(head)
        self._queued -= len(group.readings)
        return group

    def _requeue(self, group: _Group) -> None:
        with self._cond:
            if group.readings:
                self._queue.appendleft(group.readings)
                self._queued += len(group.readings)
            self._events[:0] = group.events
            if self._queued > self._options.max_queued_rows:
                self._overflow()

    def _done(self, finished: int, error: BaseException | None = None) -> None:
        """`finished` items are committed or recorded as gaps; wake the flushes that wait for them."""
        with self._cond:
            self._processed += finished
            ready = [w for w in self._waiters if error is not None or w[0] <= self._processed]
            self._waiters = [w for w in self._waiters if w not in ready]
        for _, waiter in ready:
            waiter(error)

    def _give_up_queue(self) -> None:
        """At close after a failure: what cannot be committed is at least counted."""
        with self._cond:
            left = sum(len(r) for r in self._queue)
            self._queue.clear()
            self._queued = 0
            waiters, self._waiters = self._waiters, []
        if left:
            self._tally.add(dropped=left)
        error = StorageError("the buffer closed before these readings were committed")
        for _, waiter in waiters:
            waiter(error if left else None)

    # -- one group commit ----------------------------------------------------------------------

    def _commit(self, group: _Group) -> bool:
        gaps = self._gaps.take()
        if not group.readings and not group.events and not gaps:
            self._done(0)
            return True
        try:
            self._write(group, gaps)
        except sqlite3.Error as exc:
            self._rollback()
            return self._recover(group, gaps, exc)
        except Exception as exc:
            # not the disk: a reading that cannot be packed (wrong types, out of range). Drop
            # those, keep the rest queued, so one bad reading never blocks ingest for good.
            self._rollback()
            self._gaps.restore(gaps)
            good = [r for r in group.readings if _packable(r)]
            bad = len(group.readings) - len(good)
            message = f"{bad} unstorable readings dropped: {type(exc).__name__}: {exc}"
            self._tally.add(errors=1, dropped=bad, last_error=message)
            group.readings = good
            self._requeue(group)
            self._done(bad, StorageError(message))
            return True
        self._condition.committed()
        self._done(len(group))
        return True

    def _recover(self, group: _Group, gaps: list[GapRecord], exc: sqlite3.Error) -> bool:
        """SQLITE_FULL: make room by the policy and retry once; else the readings become gaps."""
        self._gaps.restore(gaps)
        if not is_full(exc):
            self._failed(group, exc)
            return False
        self._tally.add(errors=1, last_error=f"disk full: {exc}")
        self._condition.failed(DISK_FULL, exc)
        if self._ballast.release():
            self._shrink_wal()
        try:
            self._make_room(len(group.readings) * 4)
        except sqlite3.Error:
            self._rollback()
        self._shrink_wal()
        retry = self._gaps.take()
        try:
            self._write(group, retry)
        except sqlite3.Error as again:
            self._rollback()
            self._gaps.restore(retry)
            dropped = self._gaps.add_readings(group.readings, quota.REASON_DISK)
            self._tally.add(dropped=dropped, errors=1, last_error=f"disk full: {again}")
            self._condition.lost(dropped, quota.REASON_DISK)
            group.readings = []
            self._requeue(group)  # events stay queued
            self._done(dropped)
            return True
        self._done(len(group))
        return True  # handled by the policy: no backoff, the next commit retries what is left

    def _shrink_wal(self) -> None:
        """Give the WAL's file space back: on a full filesystem it is where the next commit writes."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _failed(self, group: _Group, exc: BaseException) -> None:
        if is_corruption(exc, self._path.parent):
            self.corrupt = f"{type(exc).__name__}: {exc}"  # the store quarantines the file
        self._tally.add(errors=1, last_error=f"{type(exc).__name__}: {exc}")
        self._retry_delay = self._condition.failed(STORAGE_ERROR, exc)
        self._requeue(group)
        self._done(0, StorageError(f"group commit failed: {exc}"))
        self._reopen()

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        self._load_series()

    def _reopen(self) -> None:
        """A failed I/O may leave the connection unusable: start over with a fresh one."""
        try:
            conn = schema.connect(self._path)
        except sqlite3.Error:
            return
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        self._conn = conn
        self._load_series()

    def close_connection(self) -> None:
        """Close the write connection (after stop())."""
        self._conn.close()

    def _load_series(self) -> None:
        try:
            rows = self._conn.execute("SELECT id, sensor, quantity, unit FROM series").fetchall()
        except sqlite3.Error:
            return
        self._series = {(s, q, u): i for i, s, q, u in rows}

    def _series_id(self, key: SeriesKey) -> int:
        sid = self._series.get(key)
        if sid is None:
            cur = self._conn.execute("INSERT INTO series(sensor, quantity, unit) VALUES (?, ?, ?)", key)
            sid = int(cur.lastrowid or 0)
            self._series[key] = sid
        return sid

    def _write(self, group: _Group, gaps: list[GapRecord]) -> None:
        """One group commit; the quota policy is applied inside the same transaction."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        packed = self._pack(group.readings) if group.readings else None
        eviction = quota.Eviction()
        dropped = 0
        full = None if packed is None else self._fits(len(packed.data), eviction)
        if full is not None:
            book = GapBook()
            dropped = book.add_readings(group.readings, full)
            gaps = gaps + book.take()
            packed = None
        if packed is not None:
            conn.execute(
                "INSERT INTO chunk(n, next_ts, min_ts, max_ts, scale, data) VALUES (?, ?, ?, ?, ?, ?)",
                (packed.n, packed.min_ts, packed.min_ts, packed.max_ts, packed.scale, packed.data),
            )
        quota.insert_events(conn, group.events)
        self._insert_gaps(gaps)
        conn.execute("COMMIT")
        committed = packed.n if packed is not None else 0
        self._tally.add(
            committed=committed,
            commits=1,
            last_commit_ms=now_ms(),
            dropped=dropped,
            gaps=len(gaps),
        )
        if full is not None:
            self._condition.lost(dropped, full)
        self._count(eviction, committed)

    def _pack(self, readings: list[Reading]) -> chunk.PackedChunk:
        n = len(readings)
        ids = np.fromiter((self._series_id(_series_key(r)) for r in readings), np.int32, n)
        ts = np.fromiter((r.ts_ms for r in readings), np.int64, n)
        value = np.fromiter((r.value for r in readings), np.float64, n)
        quality = np.fromiter((r.quality for r in readings), np.uint16, n)
        return chunk.pack(ids, ts, value, quality)

    def _fits(self, size: int, eviction: quota.Eviction) -> str | None:
        """Apply the quota policy before writing; the gap reason when the readings must become gaps."""
        need = size + quota.ROW_OVERHEAD
        room, reason = self._room()
        if need <= room:
            return None
        self._evict(need - room, eviction, reason)
        room, reason = self._room()
        return None if need <= room else reason

    def _room(self) -> tuple[int, str]:
        return quota.room(self._conn, self._path.parent, self._options)

    def _evict(self, need: int, into: quota.Eviction, reason: str) -> None:
        drop = self._options.policy == "drop_oldest"
        quota.evict(self._conn, need, drop_undelivered=drop, reason=reason, into=into)

    def _count(self, eviction: quota.Eviction, committed: int) -> None:
        """Counters after a commit: what was evicted, what is now pending."""
        self._tally.add(
            dropped=eviction.dropped + eviction.outbox_readings,
            pruned=eviction.pruned,
            gaps=eviction.gaps,
            pending=committed - eviction.dropped,
            outbox_rows=-eviction.outbox_rows,
        )
        self._condition.lost(eviction.dropped + eviction.outbox_readings, eviction.reason)
        with contextlib.suppress(sqlite3.Error):
            self._tally.set(used_bytes=schema.used_bytes(self._conn))

    def _make_room(self, size: int) -> None:
        """After SQLITE_FULL: evict in a transaction of its own."""
        eviction = quota.Eviction()
        self._conn.execute("BEGIN IMMEDIATE")
        self._evict(size + quota.ROW_OVERHEAD, eviction, quota.REASON_DISK)
        self._conn.execute("COMMIT")
        self._count(eviction, 0)

    def _insert_gaps(self, gaps: list[GapRecord]) -> None:
        rows = [
            (self._series_id((g.sensor, g.quantity, g.unit)), g.from_ms, g.to_ms, g.count, g.reason)
            for g in gaps
        ]
        self._conn.executemany(
            "INSERT INTO gap(series_id, from_ms, to_ms, count, reason) VALUES (?, ?, ?, ?, ?)", rows
        )

    # -- retention -----------------------------------------------------------------------------

    def _prune_step(self) -> None:
        """Delete a few old raw chunks that are batched; short, so ingest never waits long."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        self._ballast.ensure()
        cutoff = now_ms() - int(self._options.keep_raw_s * 1000)
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            below = schema.meta(conn, schema.BATCHED_BELOW)
            rows = conn.execute(
                "SELECT id, n, max_ts FROM chunk WHERE id < ? AND id < (SELECT MAX(id) FROM chunk)"
                " ORDER BY id LIMIT ?",
                (below, PRUNE_STEP),
            ).fetchall()
            doomed = [(cid, n) for cid, n, max_ts in rows if max_ts < cutoff]
            conn.executemany("DELETE FROM chunk WHERE id = ?", [(cid,) for cid, _ in doomed])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._tally.add(errors=1, last_error=f"prune: {exc}")
            return
        self._tally.add(pruned=sum(n for _, n in doomed))
        if len(doomed) == PRUNE_STEP:
            self._next_prune = now  # more to do: another step after the next commit
