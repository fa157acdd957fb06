"""What the agent's windowing needs to survive a restart: the watermark, revisions, recent batched readings.

Window state itself lives in memory (gateway/window_routing.py); it is rebuilt at start by replaying the
readings already batched, because every batch sealed the windows of exactly the readings it marked
batched. Two facts cannot be replayed and are kept here, written in the seal transaction: the
watermark of the last sealed batch (which windows were already emitted) and the revision numbers of
windows revised after their first emission (so the next revision supersedes them at the receiver).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np

from buffer import chunk, schema
from buffer.batching import SeriesNames
from buffer.records import BatchedReadings, WindowMark, WindowProgress, WindowState


def record(conn: sqlite3.Connection, progress: WindowProgress) -> None:
    """Store the watermark and revisions of one sealed batch (inside the seal transaction)."""
    conn.executemany(
        "INSERT INTO window_rev(sensor, quantity, unit, window_ms, window_start, rev, expires_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sensor, quantity, unit, window_ms, window_start)"
        " DO UPDATE SET rev = max(rev, excluded.rev), expires_ms = excluded.expires_ms",
        [
            (m.sensor, m.quantity, m.unit, m.window_ms, m.window_start, m.rev, m.expires_ms)
            for m in progress.revisions
        ],
    )
    conn.execute("DELETE FROM window_rev WHERE expires_ms <= ?", (progress.watermark_ms,))
    if schema.meta(conn, schema.WINDOW_WATERMARK) < progress.watermark_ms:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (schema.WINDOW_WATERMARK, progress.watermark_ms),
        )


def load(conn: sqlite3.Connection) -> WindowState:
    """The watermark of the last sealed batch that carried window progress, and live revisions."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (schema.WINDOW_WATERMARK,)).fetchone()
    marks = tuple(
        WindowMark(*r)
        for r in conn.execute(
            "SELECT sensor, quantity, unit, window_ms, window_start, rev, expires_ms FROM window_rev"
        )
    )
    return WindowState(watermark_ms=None if row is None else int(row[0]), revisions=marks)


def read_batched(
    conn: sqlite3.Connection, names: SeriesNames, since_ts_ms: int, after_chunk: int, max_chunks: int
) -> BatchedReadings:
    """Batched readings (sealed, delivered or not) with ts >= since_ts_ms, not yet pruned, from the
    first `max_chunks` chunks after chunk id `after_chunk` (so a long replay never holds it all)."""
    conn.execute("BEGIN")
    try:
        below = schema.meta(conn, schema.BATCHED_BELOW)
        rows = conn.execute(
            "SELECT id, n, done, min_ts, scale, data FROM chunk"
            " WHERE id > ? AND max_ts >= ? AND (id < ? OR done > 0) ORDER BY id LIMIT ?",
            (after_chunk, since_ts_ms, below, max_chunks),
        ).fetchall()
        last_chunk = int(rows[-1][0]) if rows else None
        columns, rows = _decodable(rows)
        # each chunk's first `done` readings in canonical order are batched (all, below batched_below)
        batched = np.fromiter((n if cid < below else done for cid, n, done, *_ in rows), np.int64, len(rows))
        counts = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        position = np.arange(len(columns)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = (position < np.repeat(batched, counts)) & (columns.ts_ms >= since_ts_ms)
        columns = columns.select(keep)
        ids = np.unique(columns.series)
        keys = tuple(names.get(conn, int(sid)) for sid in ids)
    finally:
        conn.execute("COMMIT")
    return BatchedReadings(
        series_keys=keys,
        series=np.searchsorted(ids, columns.series).astype(np.int32),
        ts_ms=columns.ts_ms,
        value=columns.value,
        quality=columns.quality,
        last_chunk=last_chunk,
    )


def _decodable(rows: list[Any]) -> tuple[chunk.Columns, list[Any]]:
    """The readings of the chunks that decode, and those chunks: a replay skips bit-rotten ones
    (pending() reports and discards unbatched ones; these were uploaded already)."""
    try:
        return chunk.unpack_many([(n, min_ts, scale, data) for _, n, _, min_ts, scale, data in rows]), rows
    except chunk.CorruptChunk as exc:
        bad = set(exc.indices)
        rows = [row for i, row in enumerate(rows) if i not in bad]
    return chunk.unpack_many([(n, min_ts, scale, data) for _, n, _, min_ts, scale, data in rows]), rows
