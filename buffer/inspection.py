"""Read-only looks into a buffer file for technicians (`gateway buffer ...`), safe while the agent runs.

Nothing here writes: the file is opened with mode=ro, so a look can never quarantine, checkpoint
or change what the agent is doing.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from buffer import chunk, schema
from gateway.errors import StorageError
from gateway.model import Quality, Reading

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
    db_bytes: int
    wal_bytes: int
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
    except sqlite3.Error as exc:
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
        db_bytes=_size(name),
        wal_bytes=_size(f"{name}-wal"),
        used_bytes=schema.used_bytes(conn),
        page_size=int(conn.execute("PRAGMA page_size").fetchone()[0]),
    )


def recent(conn: sqlite3.Connection, limit: int, sensor: str | None = None) -> list[Reading]:
    """The newest raw readings (batched or not), newest first, optionally of one sensor."""
    names = {i: (s, q, u) for i, s, q, u in conn.execute("SELECT id, sensor, quantity, unit FROM series")}
    wanted = None if sensor is None else {i for i, key in names.items() if key[0] == sensor}
    found: list[Reading] = []
    cursor = conn.execute("SELECT n, min_ts, scale, data FROM chunk ORDER BY id DESC")
    for row in cursor:
        columns = chunk.unpack(*row)
        for index in np.argsort(-columns.ts_ms, kind="stable"):
            sid = int(columns.series[index])
            if wanted is not None and sid not in wanted:
                continue
            s, q, u = names.get(sid, ("?", "?", "?"))
            found.append(
                Reading(
                    s,
                    q,
                    int(columns.ts_ms[index]),
                    float(columns.value[index]),
                    u,
                    Quality(int(columns.quality[index])),
                )
            )
        if len(found) >= limit:
            break
    cursor.close()
    found.sort(key=lambda r: r.ts_ms, reverse=True)
    return found[:limit]


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
