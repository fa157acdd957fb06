"""Read-only looks into a buffer file for technicians (`gateway buffer ...`), safe while the agent runs.

Nothing here writes: the file is opened with mode=ro, so a look can never quarantine, checkpoint
or change what the agent is doing.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from buffer import chunk, schema
from kernel.errors import StorageError
from kernel.model import Quality, Reading

DB_NAME = "buffer.db"


@dataclass(frozen=True)
class BufferSummary:
    """What a buffer file holds right now."""

    path: str
    readings: int  # raw readings stored (pending + batched, not yet pruned)
    pending: int  # not yet in any batch
    oldest_pending_ms: int | None
    newest_ms: int | None
    chunks: int
    outbox_rows: int  # batches waiting for acknowledgement
    outbox_readings: int
    oldest_outbox_ms: int | None
    gaps_unsent: int
    events_unsent: int
    next_seq: int
    epoch: str | None  # hex; the batch identity is (gateway id, epoch, seq); None before schema 3
    db_bytes: int  # database file plus its WAL, as StoreStatistics.db_bytes
    wal_bytes: int  # the WAL part of db_bytes
    used_bytes: int
    page_size: int


@dataclass(frozen=True)
class OutboxRow:
    """One signed batch waiting for acknowledgement."""

    seq: int
    readings: int
    bytes: int
    created_ms: int


@dataclass(frozen=True)
class GapRow:
    """One gap record; batch_seq is None while it waits for the next batch."""

    sensor: str
    quantity: str
    unit: str
    from_ms: int
    to_ms: int
    count: int
    reason: str
    batch_seq: int | None


def open_readonly(state_dir: Path) -> sqlite3.Connection:
    """The agent's buffer file in `state_dir`, opened read-only."""
    path = state_dir / DB_NAME
    if not path.exists():
        raise StorageError(f"no buffer at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        conn.execute("SELECT COUNT(*) FROM meta").fetchone()
    except (sqlite3.Error, *schema.GARBAGE_ERRORS) as exc:
        raise StorageError(f"cannot read buffer {path}: {exc}") from exc
    return conn


def summary(conn: sqlite3.Connection) -> BufferSummary:
    """Counts, ages and sizes of the buffer."""
    name = conn.execute("PRAGMA database_list").fetchone()[2]
    below = schema.meta(conn, schema.BATCHED_BELOW)
    readings, chunks, newest = conn.execute(
        "SELECT COALESCE(SUM(n), 0), COUNT(*), MAX(max_ts) FROM chunk"
    ).fetchone()
    pending, oldest = conn.execute(
        "SELECT COALESCE(SUM(n - done), 0), MIN(next_ts) FROM chunk WHERE id >= ? AND done < n",
        (below,),
    ).fetchone()
    outbox_rows, outbox_readings, oldest_outbox = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(readings), 0), MIN(created_ms) FROM outbox"
    ).fetchone()
    gaps = conn.execute("SELECT COUNT(*) FROM gap WHERE batch_seq IS NULL").fetchone()[0]
    events = conn.execute("SELECT COUNT(*) FROM event WHERE batch_seq IS NULL").fetchone()[0]
    return BufferSummary(
        path=str(name),
        readings=int(readings),
        pending=int(pending),
        oldest_pending_ms=oldest,
        newest_ms=newest,
        chunks=int(chunks),
        outbox_rows=int(outbox_rows),
        outbox_readings=int(outbox_readings),
        oldest_outbox_ms=oldest_outbox,
        gaps_unsent=int(gaps),
        events_unsent=int(events),
        next_seq=schema.meta(conn, schema.LAST_SEQ) + 1,
        epoch=_epoch_hex(conn),
        db_bytes=_size(name) + _size(f"{name}-wal"),  # as in the agent's status: file plus WAL
        wal_bytes=_size(f"{name}-wal"),
        used_bytes=schema.used_bytes(conn),
        page_size=int(conn.execute("PRAGMA page_size").fetchone()[0]),
    )


def _epoch_hex(conn: sqlite3.Connection) -> str | None:
    try:
        return schema.epoch(conn).hex()
    except sqlite3.Error:  # a database of an agent before schema 3 (no identity table)
        return None


@dataclass(frozen=True)
class StoredReading:
    """A raw reading as the buffer holds it; `batched` once it is in a signed batch."""

    reading: Reading
    batched: bool


def recent(conn: sqlite3.Connection, limit: int, sensor: str | None = None) -> list[Reading]:
    """The newest raw readings (batched or not), newest first, optionally of one sensor."""
    found: list[Reading] = []
    for rows in _chunks(conn, newest_first=True):
        found += [stored.reading for stored in _readings(conn, rows, sensor)]
        if len(found) >= limit:
            break
    found.sort(key=lambda r: r.ts_ms, reverse=True)
    return found[:limit]


def export(
    conn: sqlite3.Connection,
    sensor: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Iterator[StoredReading]:
    """Every raw reading still stored with since_ms <= ts < until_ms, chunk by chunk (bounded memory).

    Commit order, each commit in time order: time order except for readings that arrived late.
    """
    low = _MIN if since_ms is None else since_ms
    high = _MAX if until_ms is None else until_ms
    for rows in _chunks(conn, newest_first=False, low=low, high=high):
        for stored in _readings(conn, rows, sensor):
            if low <= stored.reading.ts_ms < high:
                yield stored


_Row = tuple[int, int, int, int, int, bytes]  # id, n, done, min_ts, scale, data
_MIN, _MAX = -(2**63), 2**63 - 1


def _chunks(
    conn: sqlite3.Connection, *, newest_first: bool, low: int = _MIN, high: int = _MAX
) -> Iterator[list[_Row]]:
    """Chunks overlapping [low, high), 256 at a time, so a 1 GiB buffer is never read at once."""
    sql = (
        "SELECT id, n, done, min_ts, scale, data FROM chunk WHERE id < ? AND max_ts >= ? AND min_ts < ?"
        " ORDER BY id DESC LIMIT 256"
        if newest_first
        else "SELECT id, n, done, min_ts, scale, data FROM chunk WHERE id > ? AND max_ts >= ? AND min_ts < ?"
        " ORDER BY id LIMIT 256"
    )
    after = _MAX if newest_first else _MIN
    while page := conn.execute(sql, (after, low, high)).fetchall():
        yield page
        after = page[-1][0]


def _readings(conn: sqlite3.Connection, rows: list[_Row], sensor: str | None) -> Iterator[StoredReading]:
    names = {i: (s, q, u) for i, s, q, u in conn.execute("SELECT id, sensor, quantity, unit FROM series")}
    below = schema.meta(conn, schema.BATCHED_BELOW)
    for chunk_id, n, done, min_ts, scale, data in rows:
        try:
            columns = chunk.unpack(n, min_ts, scale, data)
        except chunk.CorruptChunk:
            continue  # the agent reports and discards it when it batches; a look must not fail
        batched_upto = n if chunk_id < below else done
        for index in range(len(columns)):
            s, q, u = names.get(int(columns.series[index]), ("?", "?", "?"))
            if sensor is not None and s != sensor:
                continue
            reading = Reading(
                s,
                q,
                int(columns.ts_ms[index]),
                float(columns.value[index]),
                u,
                Quality(int(columns.quality[index])),
            )
            yield StoredReading(reading, index < batched_upto)


def outbox(conn: sqlite3.Connection, limit: int) -> list[OutboxRow]:
    """Batches waiting for acknowledgement, oldest seq first."""
    rows = conn.execute(
        "SELECT seq, readings, length(blob), created_ms FROM outbox ORDER BY seq LIMIT ?", (limit,)
    )
    return [OutboxRow(int(a), int(b), int(c), int(d)) for a, b, c, d in rows]


def gaps(conn: sqlite3.Connection, limit: int) -> list[GapRow]:
    """Gap records still in the buffer (unsent, or sent but not yet acknowledged), newest first."""
    rows = conn.execute(
        "SELECT s.sensor, s.quantity, s.unit, g.from_ms, g.to_ms, g.count, g.reason, g.batch_seq"
        " FROM gap g LEFT JOIN series s ON s.id = g.series_id ORDER BY g.id DESC LIMIT ?",
        (limit,),
    )
    return [GapRow(*row) for row in rows]


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
