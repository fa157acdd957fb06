"""Quota and full-disk policy: what the store gives up, and the gap records that say so."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from buffer import chunk, schema
from buffer.records import GapRecord, SeriesKey, StoreOptions
from gateway.model import HealthEvent, Reading

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
    """Gaps not yet written to the database, merged per (series, reason)."""

    def __init__(self) -> None:
        self._ranges: dict[tuple[SeriesKey, str], list[int]] = {}

    def __len__(self) -> int:
        return len(self._ranges)

    def add(self, key: SeriesKey, from_ms: int, to_ms: int, count: int, reason: str) -> None:
        """Record `count` readings of series `key` between from_ms and to_ms as given up."""
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
        for r in readings:
            self.add((r.sensor, r.quantity, r.unit), r.ts_ms, r.ts_ms, 1, reason)
            total += 1
        return total

    def take(self) -> list[GapRecord]:
        """Hand out every gap (the caller puts them back with restore() if writing fails)."""
        records = [
            GapRecord(key[0], key[1], key[2], f, t, c, reason)
            for (key, reason), (f, t, c) in self._ranges.items()
        ]
        self._ranges.clear()
        return records

    def restore(self, records: Iterable[GapRecord]) -> None:
        """Put gaps back that could not be written."""
        for g in records:
            self.add((g.sensor, g.quantity, g.unit), g.from_ms, g.to_ms, g.count, g.reason)


@dataclass
class Eviction:
    """What one eviction gave up."""

    freed: int = 0
    dropped: int = 0  # unbatched readings turned into gaps
    pruned: int = 0  # batched raw readings deleted
    gaps: int = 0
    outbox_rows: int = 0
    outbox_readings: int = 0  # readings of signed batches dropped from the outbox


def room(conn: sqlite3.Connection, folder: Path, options: StoreOptions) -> int:
    """Bytes the database may still grow by under max_bytes and min_free_bytes.

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
    return min(options.max_bytes - used, fs_room)


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def evict(
    conn: sqlite3.Connection,
    need: int,
    *,
    drop_unbatched: bool,
    reason: str,
    into: Eviction | None = None,
) -> Eviction:
    """Free about `need` bytes inside the caller's transaction, cheapest loss first.

    Order: raw readings already batched (their data is in the outbox or delivered), then, when
    `drop_unbatched`, the oldest unbatched readings (each becomes a gap record), then the oldest
    signed batches of the outbox (an event names their seqs). The newest chunk is never deleted so
    chunk ids stay increasing.
    """
    result = into if into is not None else Eviction()
    below = schema.meta(conn, schema.BATCHED_BELOW)
    _evict_batched(conn, below, need + HEADROOM, result)
    target = need + HEADROOM_UNBATCHED
    if result.freed < target and drop_unbatched:
        _evict_unbatched(conn, below, target, reason, result)
    if result.freed < target and drop_unbatched:
        _evict_outbox(conn, target, reason, result)
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
        "SELECT id, n, done, min_ts, scale, data FROM chunk"
        " WHERE id >= ? AND done < n AND id < ? ORDER BY id",
        (below, newest),
    )
    doomed: list[tuple[int]] = []
    for chunk_id, n, done, min_ts, scale, data in cursor:
        if result.freed >= target:
            break
        columns = chunk.unpack(n, min_ts, scale, data).select(np.arange(done, n))
        result.gaps += _insert_gaps(conn, columns, reason)
        result.dropped += len(columns)
        result.freed += len(data) + ROW_OVERHEAD
        doomed.append((chunk_id,))
    cursor.close()
    conn.executemany("DELETE FROM chunk WHERE id = ?", doomed)


def _insert_gaps(conn: sqlite3.Connection, columns: chunk.Columns, reason: str) -> int:
    series = columns.series
    ts = columns.ts_ms
    rows = []
    for sid in np.unique(series):
        sel = ts[series == sid]
        rows.append((int(sid), int(sel.min()), int(sel.max()), len(sel), reason))
    conn.executemany("INSERT INTO gap(series_id, from_ms, to_ms, count, reason) VALUES (?, ?, ?, ?, ?)", rows)
    return len(rows)


def _evict_outbox(conn: sqlite3.Connection, target: int, reason: str, result: Eviction) -> None:
    rows = conn.execute("SELECT seq, readings, length(blob) FROM outbox ORDER BY seq").fetchall()
    doomed: list[tuple[int, int]] = []
    for seq, readings, size in rows:
        if result.freed >= target:
            break
        doomed.append((seq, readings))
        result.freed += size + ROW_OVERHEAD
    if not doomed:
        return
    conn.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq, _ in doomed])
    dropped = sum(n for _, n in doomed)
    detail = f"seq {doomed[0][0]}..{doomed[-1][0]} ({dropped} readings) dropped: {reason}"
    event = HealthEvent(int(time.time() * 1000), "buffer", "buffer.batches_dropped", detail)
    insert_events(conn, [event])
    result.outbox_rows += len(doomed)
    result.outbox_readings += dropped


def insert_events(conn: sqlite3.Connection, events: Iterable[HealthEvent]) -> None:
    """Store health events for the next batch (inside the caller's transaction)."""
    conn.executemany(
        "INSERT INTO event(ts_ms, source, kind, detail) VALUES (?, ?, ?, ?)",
        [(e.ts_ms, e.source, e.kind, e.detail) for e in events],
    )
