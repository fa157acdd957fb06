"""Quota and full-disk policy: what the store gives up, and the gap records that say so."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from buffer import chunk, schema
from buffer.records import GapRecord, SeriesKey, StoreOptions
from kernel.model import HealthEvent, Reading
from kernel.wallclock import now_ms

#: bytes a chunk row costs beside its data (cell header, ids, integers), a generous estimate
ROW_OVERHEAD = 64
#: bytes evicted beyond the need, so the batching connection (seal, ack) finds room too:
#: generous when only already-batched raw readings go, small when unbatched readings would
HEADROOM = 64 << 10
HEADROOM_UNBATCHED = 16 << 10

#: filesystem space left alone beside the reserve for the files (wal-index, block rounding)
FS_SLACK = 128 << 10

REASON_QUOTA = "buffer_full"
REASON_DISK = "disk_full"
REASON_STORAGE = "storage_error"
#: the backend refused a batch for good (it does not verify, or its seq holds other content there)
REASON_REJECTED = "rejected_by_backend"


#: space held back in a file beside the database for a full disk (about one full WAL)
BALLAST_BYTES = 2 << 20


class Ballast:
    """A file of reserved space next to the database, given back when the filesystem is full.

    When the disk fills up behind the store's back, the WAL cannot grow and its checkpoint cannot
    extend the database file, so no transaction (not even an eviction) could commit. Deleting the
    ballast frees enough space for the checkpoint and the evictions; it is re-created once the
    filesystem has room again.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @classmethod
    def beside(cls, db: Path) -> Ballast:
        """The ballast of the database at `db`: `<db>.reserve`, BALLAST_BYTES."""
        return cls(db.with_name(db.name + ".reserve"), BALLAST_BYTES)

    def ensure(self) -> bool:
        """Create the ballast when missing and the filesystem has room; True when it exists."""
        try:
            if self.path.stat().st_size >= self.size:
                return True
        except FileNotFoundError:
            pass
        try:
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < 2 * self.size:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
        except OSError:
            self.release()
            return False
        return True

    def release(self) -> bool:
        """Delete the ballast; True when there was one to give back."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


class GapBook:
    """Gaps not yet written to the database, merged per (series, reason); thread-safe.

    The writer thread takes and restores gaps while producers (a queue overflowing because the
    storage is down) add to it, so every method holds the lock.
    """

    def __init__(self) -> None:
        self._ranges: dict[tuple[SeriesKey, str], list[int]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._ranges)

    def add(self, key: SeriesKey, from_ms: int, to_ms: int, count: int, reason: str) -> None:
        """Record `count` readings of series `key` between from_ms and to_ms as given up."""
        with self._lock:
            self._add(key, from_ms, to_ms, count, reason)

    def _add(self, key: SeriesKey, from_ms: int, to_ms: int, count: int, reason: str) -> None:
        entry = self._ranges.get((key, reason))
        if entry is None:
            self._ranges[(key, reason)] = [from_ms, to_ms, count]
            return
        entry[0] = min(entry[0], from_ms)
        entry[1] = max(entry[1], to_ms)
        entry[2] += count

    def add_readings(self, readings: Iterable[Reading], reason: str) -> int:
        """Record readings that will never be stored; return how many."""
        total = 0
        with self._lock:
            for r in readings:
                self._add((r.sensor, r.quantity, r.unit), r.ts_ms, r.ts_ms, 1, reason)
                total += 1
        return total

    def take(self) -> list[GapRecord]:
        """Hand out every gap (the caller puts them back with restore() if writing fails)."""
        with self._lock:
            ranges, self._ranges = self._ranges, {}
        return [
            GapRecord(key[0], key[1], key[2], f, t, c, reason) for (key, reason), (f, t, c) in ranges.items()
        ]

    def restore(self, records: Iterable[GapRecord]) -> None:
        """Put gaps back that could not be written."""
        with self._lock:
            for g in records:
                self._add((g.sensor, g.quantity, g.unit), g.from_ms, g.to_ms, g.count, g.reason)


@dataclass
class Eviction:
    """What one eviction gave up."""

    freed: int = 0
    dropped: int = 0  # unbatched readings turned into gaps
    pruned: int = 0  # batched raw readings deleted
    gaps: int = 0
    outbox_rows: int = 0
    outbox_readings: int = 0  # readings of signed batches dropped from the outbox
    reason: str = REASON_QUOTA  # the reason of the gap records it made


def room(conn: sqlite3.Connection, folder: Path, options: StoreOptions) -> tuple[int, str]:
    """Bytes the database may still grow by under max_bytes and min_free_bytes, and the binding limit.

    The limit is REASON_QUOTA (max_bytes) or REASON_DISK (the filesystem), the reason any gap
    made to stay within it carries.

    The filesystem side counts what the files will still take without any new data: the
    database file grows to page_count pages when the WAL is checkpointed, and the WAL grows up
    to its checkpoint size. Without that reserve a full disk could block the checkpoint that
    would free the WAL, and no transaction (not even an eviction) could commit.
    """
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    used = (pages - free_pages) * page_size
    name = conn.execute("PRAGMA database_list").fetchone()[2]
    frames = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    db_growth = max(0, pages * page_size - _file_size(name))
    wal_growth = max(0, frames * (page_size + 24) + 32 - _file_size(f"{name}-wal"))
    st = os.statvfs(folder)
    fs_room = (
        st.f_bavail * st.f_frsize
        - options.min_free_bytes
        - db_growth
        - wal_growth
        - FS_SLACK
        + free_pages * page_size
    )
    quota_room = options.max_bytes - used
    return (quota_room, REASON_QUOTA) if quota_room <= fs_room else (fs_room, REASON_DISK)


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def evict(
    conn: sqlite3.Connection,
    need: int,
    *,
    drop_undelivered: bool,
    reason: str,
    into: Eviction | None = None,
) -> Eviction:
    """Free about `need` bytes inside the caller's transaction, cheapest loss first.

    Order: raw readings already batched (their data is in the outbox or delivered); then, when
    `drop_undelivered` (policy drop_oldest), the oldest undelivered data: signed batches of the
    outbox in seq order (they hold the oldest readings), then the oldest unbatched readings.
    Whatever undelivered is dropped becomes gap records. The newest chunk is never deleted so
    chunk ids stay increasing.
    """
    result = into if into is not None else Eviction()
    result.reason = reason
    below = schema.meta(conn, schema.BATCHED_BELOW)
    _evict_batched(conn, below, need + HEADROOM, result)
    target = need + HEADROOM_UNBATCHED
    if result.freed < target and drop_undelivered:
        _evict_outbox(conn, target, reason, result)
    if result.freed < target and drop_undelivered:
        _evict_unbatched(conn, below, target, reason, result)
    return result


def _newest_chunk(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(id) FROM chunk").fetchone()
    return int(row[0]) if row[0] is not None else 0


def _evict_batched(conn: sqlite3.Connection, below: int, target: int, result: Eviction) -> None:
    newest = _newest_chunk(conn)
    cursor = conn.execute(
        "SELECT id, n, length(data) FROM chunk WHERE (id < ? OR done = n) AND id < ? ORDER BY id",
        (below, newest),
    )
    doomed: list[tuple[int]] = []
    for chunk_id, n, size in cursor:  # read lazily: a day of batched chunks is many rows
        if result.freed >= target:
            break
        doomed.append((chunk_id,))
        result.freed += size + ROW_OVERHEAD
        result.pruned += n
    cursor.close()
    conn.executemany("DELETE FROM chunk WHERE id = ?", doomed)


def _evict_unbatched(
    conn: sqlite3.Connection, below: int, target: int, reason: str, result: Eviction
) -> None:
    newest = _newest_chunk(conn)
    cursor = conn.execute(
        "SELECT id, n, done, min_ts, max_ts, scale, data FROM chunk"
        " WHERE id >= ? AND done < n AND id < ? ORDER BY id",
        (below, newest),
    )
    doomed: list[tuple[int]] = []
    lost: dict[int, list[int]] = {}
    unreadable: list[HealthEvent] = []
    for chunk_id, n, done, min_ts, max_ts, scale, data in cursor:
        if result.freed >= target:
            break
        result.freed += len(data) + ROW_OVERHEAD
        doomed.append((chunk_id,))
        try:
            columns = chunk.unpack(n, min_ts, scale, data).select(np.arange(done, n))
        except chunk.CorruptChunk:
            unreadable.append(unreadable_event(chunk_id, n - done, min_ts, max_ts))
            result.dropped += n - done
            continue
        for sid in np.unique(columns.series):
            ts = columns.ts_ms[columns.series == sid]
            _merge(lost, int(sid), int(ts.min()), int(ts.max()), len(ts))
        result.dropped += len(columns)
    cursor.close()
    # delete before inserting: on a database that is full to the last page the gap rows need
    # the pages the deleted chunks give back
    conn.executemany("DELETE FROM chunk WHERE id = ?", doomed)
    _insert_gaps(conn, lost, reason, result)
    insert_events(conn, unreadable)


def _merge(ranges: dict[int, list[int]], sid: int, from_ms: int, to_ms: int, count: int) -> None:
    """Widen the range of series `sid` (one gap record per series and eviction)."""
    entry = ranges.setdefault(sid, [from_ms, to_ms, 0])
    entry[0] = min(entry[0], from_ms)
    entry[1] = max(entry[1], to_ms)
    entry[2] += count


def _insert_gaps(
    conn: sqlite3.Connection, ranges: dict[int, list[int]], reason: str, result: Eviction
) -> None:
    conn.executemany(
        "INSERT INTO gap(series_id, from_ms, to_ms, count, reason) VALUES (?, ?, ?, ?, ?)",
        [(sid, f, t, c, reason) for sid, (f, t, c) in ranges.items()],
    )
    result.gaps += len(ranges)


def _evict_outbox(conn: sqlite3.Connection, target: int, reason: str, result: Eviction) -> None:
    """Drop the oldest batches; their readings become gaps, their gaps and events go out again."""
    cursor = conn.execute("SELECT seq, readings, length(blob) FROM outbox ORDER BY seq")
    doomed: list[tuple[int, int]] = []
    for seq, readings, size in cursor:
        if result.freed >= target:
            break
        doomed.append((seq, readings))
        result.freed += size + ROW_OVERHEAD
    cursor.close()
    drop_batches(conn, doomed, reason, result)


def drop_batches(
    conn: sqlite3.Connection, doomed: list[tuple[int, int]], reason: str, result: Eviction
) -> None:
    """Give up the outbox batches (seq, readings): their readings become gaps with `reason`, the gaps and
    events they carried go out again, and one health event says which were dropped (in the caller's
    transaction)."""
    if not doomed:
        return
    seqs = [(seq,) for seq, _ in doomed]
    lost: dict[int, list[int]] = {}
    for seq in seqs:
        for sid, from_ms, to_ms, count in conn.execute(
            "SELECT series_id, from_ms, to_ms, count FROM outbox_series WHERE seq = ?", seq
        ):
            _merge(lost, sid, from_ms, to_ms, count)
    conn.executemany("DELETE FROM outbox_series WHERE seq = ?", seqs)
    conn.executemany("DELETE FROM outbox WHERE seq = ?", seqs)  # first: the inserts need its pages
    conn.executemany("UPDATE gap SET batch_seq = NULL WHERE batch_seq = ?", seqs)
    conn.executemany("UPDATE event SET batch_seq = NULL WHERE batch_seq = ?", seqs)
    _insert_gaps(conn, lost, reason, result)
    dropped = sum(n for _, n in doomed)
    detail = f"seq {doomed[0][0]}..{doomed[-1][0]} ({dropped} readings) dropped: {reason}"
    event = HealthEvent(now_ms(), "buffer", "buffer.batches_dropped", detail)
    insert_events(conn, [event])
    result.outbox_rows += len(doomed)
    result.outbox_readings += dropped


def unreadable_event(chunk_id: int, readings: int, min_ts: int, max_ts: int) -> HealthEvent:
    """The health event for a chunk whose data cannot be decoded (its series are unknown: no gap)."""
    detail = f"chunk {chunk_id}: {readings} readings between {min_ts} and {max_ts} unreadable, dropped"
    return HealthEvent(now_ms(), "buffer", "buffer.chunk_unreadable", detail)


def insert_events(conn: sqlite3.Connection, events: Iterable[HealthEvent]) -> None:
    """Store health events for the next batch (inside the caller's transaction)."""
    conn.executemany(
        "INSERT INTO event(ts_ms, source, kind, detail) VALUES (?, ?, ?, ?)",
        [(e.ts_ms, e.source, e.kind, e.detail) for e in events],
    )
