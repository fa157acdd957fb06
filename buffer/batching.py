"""Reading what is not yet batched, and sealing a batch into the outbox in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from buffer import chunk, quota, schema
from buffer.records import GapRecord, OutboxEntry, PendingSlice, SeriesKey
from kernel.errors import StorageError
from kernel.model import HealthEvent
from kernel.wallclock import now_ms

MAX_GAPS_PER_SLICE = 1000
MAX_EVENTS_PER_SLICE = 1000


class StalePending(StorageError):
    """The pending slice no longer matches the database (already sealed, or evicted meanwhile)."""


class UnreadableChunks(Exception):
    """Chunks whose data cannot be decoded; Store.pending discards them and reads again."""

    def __init__(self, chunk_ids: list[int]) -> None:
        super().__init__(f"undecodable chunks {chunk_ids}")
        self.chunk_ids = chunk_ids


#: per series of a slice: (series id, first ts, last ts, count), kept with the outbox row
Range = tuple[int, int, int, int]

#: the part of one chunk a slice holds: (chunk id, done, end, n, next_ts) = readings [done, end)
#: of n in canonical order; next_ts is the ts of reading `end`, or max_ts + 1 when none is left
Take = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class Token:
    """What seal_batch needs: exactly which rows the slice holds."""

    takes: tuple[Take, ...]
    gap_ids: tuple[int, ...]
    event_ids: tuple[int, ...]
    readings: int
    ranges: tuple[Range, ...] = ()


class SeriesNames:
    """id -> (sensor, quantity, unit), loaded lazily from the series table."""

    def __init__(self) -> None:
        self._names: dict[int, SeriesKey] = {}

    def get(self, conn: sqlite3.Connection, sid: int) -> SeriesKey:
        """The key of series `sid` (a series is never renamed, so the cache never goes stale)."""
        key = self._names.get(sid)
        if key is None:
            rows = conn.execute("SELECT id, sensor, quantity, unit FROM series").fetchall()
            self._names = {i: (s, q, u) for i, s, q, u in rows}
            key = self._names.get(sid, ("?", "?", "?"))
        return key


EMPTY_TOKEN = Token(takes=(), gap_ids=(), event_ids=(), readings=0)


def read_pending(
    conn: sqlite3.Connection, names: SeriesNames, upto_ts_ms: int | None, limit: int
) -> PendingSlice | None:
    """Oldest unbatched readings (ts < upto_ts_ms when given), at most `limit`, plus gaps and events."""
    conn.execute("BEGIN")
    try:
        takes, columns = _read_chunks(conn, upto_ts_ms, limit)
        gap_rows = conn.execute(
            "SELECT id, series_id, from_ms, to_ms, count, reason FROM gap"
            " WHERE batch_seq IS NULL ORDER BY id LIMIT ?",
            (MAX_GAPS_PER_SLICE,),
        ).fetchall()
        event_rows = conn.execute(
            "SELECT id, ts_ms, source, kind, detail FROM event WHERE batch_seq IS NULL ORDER BY id LIMIT ?",
            (MAX_EVENTS_PER_SLICE,),
        ).fetchall()
        gaps = tuple(
            GapRecord(*names.get(conn, sid), f, t, c, reason) for _, sid, f, t, c, reason in gap_rows
        )
        ids = np.unique(columns.series)
        series_keys = tuple(names.get(conn, int(sid)) for sid in ids)
    finally:
        conn.execute("COMMIT")
    if not takes and not gap_rows and not event_rows:
        return None
    order = np.argsort(columns.ts_ms, kind="stable")
    ordered = columns.select(order)
    local = np.searchsorted(ids, ordered.series).astype(np.int32)
    token = Token(
        takes=tuple(takes),
        gap_ids=tuple(r[0] for r in gap_rows),
        event_ids=tuple(r[0] for r in event_rows),
        readings=len(columns),
        ranges=_ranges(ids, local, ordered.ts_ms),
    )
    events = tuple(HealthEvent(ts, src, kind, detail) for _, ts, src, kind, detail in event_rows)
    return PendingSlice(
        series_keys=series_keys,
        series=local,
        ts_ms=ordered.ts_ms,
        value=ordered.value,
        quality=ordered.quality,
        gaps=gaps,
        events=events,
        token=token,
    )


def _ranges(ids: npt.NDArray[np.int32], local: npt.NDArray[np.int32], ts_ms: chunk.I64) -> tuple[Range, ...]:
    """(series id, first ts, last ts, count) per series of a slice (`local` indexes `ids`)."""
    if not len(local):
        return ()
    counts = np.bincount(local, minlength=len(ids))
    first = np.full(len(ids), np.iinfo(np.int64).max)
    last = np.full(len(ids), np.iinfo(np.int64).min)
    np.minimum.at(first, local, ts_ms)
    np.maximum.at(last, local, ts_ms)
    return tuple(
        (int(ids[i]), int(first[i]), int(last[i]), int(counts[i])) for i in range(len(ids)) if counts[i]
    )


def _read_chunks(
    conn: sqlite3.Connection, upto_ts_ms: int | None, limit: int
) -> tuple[list[Take], chunk.Columns]:
    """The unbatched readings of the oldest chunks; per row only cheap Python, decoding at the end."""
    below = schema.meta(conn, schema.BATCHED_BELOW)
    sql = "SELECT id, n, done, min_ts, max_ts, scale, data FROM chunk WHERE id >= ? AND done < n"
    args: tuple[int, ...] = (below,)
    if upto_ts_ms is not None:
        sql += " AND next_ts < ?"
        args = (below, upto_ts_ms)
    takes: list[Take] = []
    rows: list[tuple[int, int, int, bytes]] = []
    partial: list[tuple[int, int, int]] = []  # (row index, done, end)
    left = limit
    cursor = conn.execute(sql + " ORDER BY id", args)
    for chunk_id, n, done, min_ts, max_ts, scale, data in cursor:
        if left <= 0:
            break
        end, next_ts = n, max_ts + 1
        if (upto_ts_ms is not None and max_ts >= upto_ts_ms) or n - done > left:
            try:
                ts = chunk.unpack(n, min_ts, scale, data).ts_ms
            except chunk.CorruptChunk:
                raise UnreadableChunks([chunk_id]) from None
            if upto_ts_ms is not None:
                end = int(np.searchsorted(ts, upto_ts_ms, side="left"))
            end = min(end, done + left)
            if end <= done:
                continue
            next_ts = int(ts[end]) if end < n else next_ts
        if done or end < n:
            partial.append((len(rows), done, end))
        rows.append((n, min_ts, scale, data))
        takes.append((chunk_id, done, end, n, next_ts))
        left -= end - done
    cursor.close()
    try:
        columns = chunk.unpack_many(rows)
    except chunk.CorruptChunk as exc:
        raise UnreadableChunks([takes[i][0] for i in exc.indices]) from None
    if partial:
        keep = np.ones(len(columns), np.bool_)
        starts = np.cumsum([0] + [r[0] for r in rows])
        for index, done, end in partial:
            keep[starts[index] : starts[index] + done] = False
            keep[starts[index] + end : starts[index + 1]] = False
        columns = columns.select(keep)
    return takes, columns


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One BEGIN IMMEDIATE transaction: committed at the end, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def seal(
    conn: sqlite3.Connection,
    seq: int,
    blob: bytes,
    token: Token,
    also: Callable[[sqlite3.Connection], None] | None = None,
    sealed_ms: int | None = None,
) -> None:
    """Outbox row + batched marks (+ `also`) in one synchronous=FULL transaction; StalePending on mismatch.

    `sealed_ms` (default: the wall clock now) is the batch's created_ms and the store's last seal."""
    created = now_ms() if sealed_ms is None else sealed_ms
    with immediate(conn):
        last = schema.meta(conn, schema.LAST_SEQ)
        if seq != last + 1:
            raise StorageError(f"seq {seq} is not the next batch seq {last + 1}")
        _mark_chunks(conn, token.takes)
        _mark_rows(conn, "gap", token.gap_ids, seq)
        _mark_rows(conn, "event", token.event_ids, seq)
        conn.execute(
            "INSERT INTO outbox(seq, blob, readings, created_ms) VALUES (?, ?, ?, ?)",
            (seq, blob, token.readings, created),
        )
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (schema.LAST_SEALED_MS, created)
        )
        conn.executemany(
            "INSERT INTO outbox_series(seq, series_id, from_ms, to_ms, count) VALUES (?, ?, ?, ?, ?)",
            [(seq, *r) for r in token.ranges],
        )
        schema.set_meta(conn, schema.LAST_SEQ, seq)
        if also is not None:
            also(conn)


def _mark_chunks(conn: sqlite3.Connection, takes: tuple[Take, ...]) -> None:
    """Advance batched_below over whole chunks from its start; update `done` of the others only.

    Skipping the UPDATE of whole chunks keeps a backlog drain from rewriting every page it reads.
    """
    if not takes:
        return
    below = schema.meta(conn, schema.BATCHED_BELOW)
    last = max(t[0] for t in takes)
    if _whole_run_from(conn, below, last, takes):
        schema.set_meta(conn, schema.BATCHED_BELOW, last + 1)
        return
    current = {
        cid: (n, done)
        for cid, n, done in conn.execute(
            "SELECT id, n, done FROM chunk WHERE id >= ? AND id <= ?", (below, last)
        )
    }
    ends = {}
    for cid, done, end, n, _ in takes:
        if cid < below or current.get(cid) != (n, done):
            raise StalePending(f"chunk {cid} changed since pending() read it")
        ends[cid] = end
    new_below = below
    for cid in sorted(current):
        n, done = current[cid]
        if done == n or ends.get(cid) == n:
            new_below = cid + 1
            continue
        break
    updates = [(end, next_ts, cid) for cid, _, end, _, next_ts in takes if cid >= new_below]
    conn.executemany("UPDATE chunk SET done = ?, next_ts = ? WHERE id = ?", updates)
    if new_below != below:
        schema.set_meta(conn, schema.BATCHED_BELOW, new_below)


def _whole_run_from(conn: sqlite3.Connection, below: int, last: int, takes: tuple[Take, ...]) -> bool:
    """True when the slice is exactly every chunk from batched_below to `last`, each one whole.

    The common case of a backlog drain; checked with one narrow query (a chunk's n never changes
    and ids are never reused, so unchanged ids with done = 0 mean unchanged chunks).
    """
    if any(done != 0 or end != n for _, done, end, n, _ in takes):
        return False
    rows = conn.execute(
        "SELECT id FROM chunk WHERE id >= ? AND id <= ? AND done = 0 ORDER BY id", (below, last)
    ).fetchall()
    total = conn.execute("SELECT COUNT(*) FROM chunk WHERE id >= ? AND id <= ?", (below, last)).fetchone()[0]
    return total == len(takes) and [r[0] for r in rows] == [t[0] for t in takes]


def _mark_rows(conn: sqlite3.Connection, table: str, ids: tuple[int, ...], seq: int) -> None:
    if not ids:
        return
    cur = conn.executemany(
        f"UPDATE {table} SET batch_seq = ? WHERE id = ? AND batch_seq IS NULL",
        [(seq, i) for i in ids],
    )
    if cur.rowcount != len(ids):
        raise StalePending(f"{table} rows changed since pending() read them")


def undelivered(
    conn: sqlite3.Connection, after_seq: int | None, limit: int, epoch: bytes
) -> list[OutboxEntry]:
    """Outbox rows in seq order (of the database whose epoch is `epoch`)."""
    rows = conn.execute(
        "SELECT seq, blob, readings, created_ms FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq if after_seq is not None else -1, limit),
    ).fetchall()
    return [OutboxEntry(int(s), bytes(b), int(r), int(c), epoch) for s, b, r, c in rows]


def deliver(conn: sqlite3.Connection, seq: int) -> int | None:
    """Delete an acknowledged batch with its gaps and events; its reading count, None if gone."""
    with immediate(conn):
        row = conn.execute("SELECT readings FROM outbox WHERE seq = ?", (seq,)).fetchone()
        conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        conn.execute("DELETE FROM outbox_series WHERE seq = ?", (seq,))
        conn.execute("DELETE FROM gap WHERE batch_seq = ?", (seq,))
        conn.execute("DELETE FROM event WHERE batch_seq = ?", (seq,))
    return int(row[0]) if row else None


def reject(conn: sqlite3.Connection, seq: int) -> quota.Eviction | None:
    """Drop batch `seq`, which the backend refused, as gaps; what was dropped, None if it is gone."""
    with immediate(conn):
        row = conn.execute("SELECT readings FROM outbox WHERE seq = ?", (seq,)).fetchone()
        eviction = quota.Eviction(reason=quota.REASON_REJECTED)
        if row is not None:
            quota.drop_batches(conn, [(seq, int(row[0]))], quota.REASON_REJECTED, eviction)
    return eviction if row is not None else None


def discard(conn: sqlite3.Connection, chunk_ids: list[int]) -> int:
    """Delete undecodable unbatched chunks, each reported by an event; returns the readings lost."""
    with immediate(conn):
        lost = 0
        events = []
        for chunk_id in chunk_ids:
            row = conn.execute(
                "SELECT n, done, min_ts, max_ts FROM chunk WHERE id = ?", (chunk_id,)
            ).fetchone()
            if row is None:
                continue
            n, done, min_ts, max_ts = row
            conn.execute("DELETE FROM chunk WHERE id = ?", (chunk_id,))
            events.append(quota.unreadable_event(chunk_id, n - done, min_ts, max_ts))
            lost += n - done
        quota.insert_events(conn, events)
    return lost
