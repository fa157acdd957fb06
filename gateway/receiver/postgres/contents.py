"""What one group commit writes: claims of batch identities, then the claimed batches' readings,
windows, gaps and events. Every function runs inside the caller's open transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from psycopg import Connection
from psycopg.rows import TupleRow

from gateway.receiver.postgres.copy_stream import binary_copy
from gateway.receiver.store import VerifiedBatch
from gateway.wire import Batch

#: (gateway id, epoch, seq)
Identity = tuple[str, bytes, int]
#: (gateway id, sensor, quantity, unit)
SeriesName = tuple[str, str, str, str]

# sorted by identity, so that concurrent group commits wait on each other's claims in one order and
# cannot deadlock; ON CONFLICT DO NOTHING waits for a concurrent claim of the same identity to commit or
# roll back, which is what makes a batch stored exactly once across receivers
_CLAIM = """
INSERT INTO batches (gateway_id, seq, kid, digest, created_ms, received_ms, readings, epoch, signed)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bytea[], %s::bytea[], %s::bigint[], %s::bigint[],
    %s::integer[], %s::bytea[], %s::bytea[])
    AS c(gateway_id, seq, kid, digest, created_ms, received_ms, readings, epoch, signed)
ORDER BY gateway_id, epoch, seq
ON CONFLICT (gateway_id, epoch, seq) DO NOTHING
RETURNING batch_id, gateway_id, epoch, seq
"""
_STORED_DIGESTS = """
SELECT b.gateway_id, b.epoch, b.seq, b.digest FROM batches b
JOIN unnest(%s::text[], %s::bytea[], %s::bigint[]) AS k(gateway_id, epoch, seq) USING (gateway_id, epoch, seq)
"""
_WINDOW_COLUMNS = (
    "series_id, window_start, window_ms, rev, count, nan_count, min, max, mean, std, first, last, "
    "first_ts, last_ts, batch_id"
)
#: per connection; `ordinal` keeps the order of the call, so equal revisions are judged first come first
INCOMING_WINDOWS = """
CREATE TEMP TABLE IF NOT EXISTS incoming_windows (LIKE window_rows, ordinal bigint NOT NULL)
ON COMMIT DELETE ROWS
"""
# the highest revision per window of this commit, upserted in key order (no deadlock between receivers);
# a stored revision that is higher or equal wins
_UPSERT_WINDOWS = f"""
INSERT INTO window_rows ({_WINDOW_COLUMNS})
SELECT DISTINCT ON (series_id, window_start, window_ms) {_WINDOW_COLUMNS} FROM incoming_windows
ORDER BY series_id, window_start, window_ms, rev DESC, ordinal
ON CONFLICT (series_id, window_start, window_ms) DO UPDATE SET
    rev = excluded.rev, count = excluded.count, nan_count = excluded.nan_count, min = excluded.min,
    max = excluded.max, mean = excluded.mean, std = excluded.std, first = excluded.first,
    last = excluded.last, first_ts = excluded.first_ts, last_ts = excluded.last_ts,
    batch_id = excluded.batch_id
WHERE excluded.rev > window_rows.rev
"""


def identity_of(batch: Batch) -> Identity:
    """The batch identity (docs/wire-format.md, 3)."""
    return batch.gateway_id, batch.epoch, batch.seq


def claim(conn: Connection[TupleRow], items: Sequence[VerifiedBatch]) -> dict[Identity, int]:
    """Insert the batches rows of identities not stored yet; the batch_id of each one claimed."""
    b = [item.batch for item in items]
    rows = conn.execute(
        _CLAIM,
        (
            [x.gateway_id for x in b], [x.seq for x in b], [x.kid for x in b], [x.digest for x in b],
            [x.created_ms for x in b], [i.received_ms for i in items], [len(x.readings) for x in b],
            [x.epoch for x in b], [i.blob for i in items],
        ),
    ).fetchall()  # fmt: skip
    return {(gateway_id, bytes(epoch), seq): batch_id for batch_id, gateway_id, epoch, seq in rows}


def stored_digests(conn: Connection[TupleRow], identities: Sequence[Identity]) -> dict[Identity, bytes]:
    """The digests stored under these identities (all of which are stored)."""
    if not identities:
        return {}
    columns = list(zip(*identities, strict=True))
    rows = conn.execute(_STORED_DIGESTS, [list(c) for c in columns]).fetchall()
    return {(g, bytes(e), s): bytes(d) for g, e, s, d in rows}


def series_names(batch: Batch) -> list[SeriesName]:
    """The (gateway id, sensor, quantity, unit) of each series of a batch, in its order."""
    return [(batch.gateway_id, text(s.sensor), text(s.quantity), text(s.unit)) for s in batch.series]


def text(value: str) -> str:
    """`value` as PostgreSQL can hold it: text cannot contain NUL, which SQLite and the wire format allow,
    so a NUL becomes U+FFFD instead of failing every group commit that carries the batch."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


@dataclass(frozen=True)
class Claimed:
    """A batch this commit stores: its batch_id and the series_id of each of its series."""

    batch: Batch
    batch_id: int
    series_ids: npt.NDArray[np.int32]


def claimed(batch: Batch, batch_id: int, series: Mapping[SeriesName, int]) -> Claimed:
    """A claimed batch with its series ids looked up."""
    ids = np.array([series[name] for name in series_names(batch)], dtype=np.int32)
    return Claimed(batch, batch_id, ids)


def write_contents(conn: Connection[TupleRow], stored: Sequence[Claimed]) -> None:
    """The readings, windows, gaps and events of the claimed batches."""
    _copy_readings(conn, stored)
    _upsert_windows(conn, stored)
    _copy_gaps_and_events(conn, stored)


def _copy_readings(conn: Connection[TupleRow], stored: Sequence[Claimed]) -> None:
    """All readings of the commit in one binary COPY (rows built by numpy, no Python per reading)."""
    parts = [c for c in stored if len(c.batch.readings)]
    if not parts:
        return
    counts = [len(c.batch.readings) for c in parts]
    stream = binary_copy(
        [
            np.concatenate([c.series_ids[c.batch.readings.series] for c in parts]),
            np.concatenate([c.batch.readings.ts_ms for c in parts]).astype(np.int64, copy=False),
            np.concatenate([c.batch.readings.value for c in parts]).astype(np.float64, copy=False),
            np.concatenate([c.batch.readings.quality for c in parts]).astype(np.int32),
            np.repeat(np.array([c.batch_id for c in parts], dtype=np.int64), counts),
        ]
    )
    with conn.cursor().copy(
        "COPY reading_rows (series_id, ts_ms, value, quality, batch_id) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.write(stream)


def _upsert_windows(conn: Connection[TupleRow], stored: Sequence[Claimed]) -> None:
    parts = [c for c in stored if len(c.batch.windows)]
    if not parts:
        return
    ws = [c.batch.windows for c in parts]
    columns: list[npt.NDArray[np.generic]] = [
        np.concatenate([c.series_ids[w.series] for c, w in zip(parts, ws, strict=True)])
    ]
    for name in ("window_start", "window_ms"):
        columns.append(np.concatenate([getattr(w, name) for w in ws]).astype(np.int64))
    columns.append(np.concatenate([w.rev for w in ws]).astype(np.int32))
    for name in ("count", "nan_count"):
        columns.append(np.concatenate([getattr(w, name) for w in ws]).astype(np.int64))
    for name in ("min", "max", "mean", "std", "first", "last"):
        columns.append(np.concatenate([getattr(w, name) for w in ws]).astype(np.float64))
    for name in ("first_ts", "last_ts"):
        columns.append(np.concatenate([getattr(w, name) for w in ws]).astype(np.int64))
    counts = [len(w) for w in ws]
    columns.append(np.repeat(np.array([c.batch_id for c in parts], dtype=np.int64), counts))
    columns.append(np.arange(sum(counts), dtype=np.int64))
    with conn.cursor().copy(
        f"COPY incoming_windows ({_WINDOW_COLUMNS}, ordinal) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.write(binary_copy(columns))
    conn.execute(_UPSERT_WINDOWS)


def _copy_gaps_and_events(conn: Connection[TupleRow], stored: Sequence[Claimed]) -> None:
    """Gaps and events are few (a handful per batch at most): psycopg formats them row by row."""
    if any(c.batch.gaps for c in stored):
        with conn.cursor().copy(
            "COPY gap_rows (series_id, from_ms, to_ms, count, reason, batch_id) FROM STDIN"
        ) as copy:
            for c in stored:
                for g in c.batch.gaps:
                    sid = int(c.series_ids[g.series])
                    copy.write_row((sid, g.from_ms, g.to_ms, g.count, text(g.reason), c.batch_id))
    if any(c.batch.events for c in stored):
        with conn.cursor().copy(
            "COPY event_rows (ts_ms, source, kind, detail, detail_json, batch_id) FROM STDIN"
        ) as copy:
            for c in stored:
                for e in c.batch.events:
                    detail = text(e.detail)
                    facts = _json_object(detail)
                    copy.write_row((e.ts_ms, text(e.source), text(e.kind), detail, facts, c.batch_id))


def _json_object(detail: str) -> str | None:
    """The detail when it is a JSON object jsonb accepts (the views read facts from it), else None."""
    if "\\u0000" in detail:  # jsonb refuses a NUL even escaped
        return None
    try:
        parsed = json.loads(detail, parse_constant=_refuse_constant)
    except ValueError:
        return None
    return detail if isinstance(parsed, dict) else None


def _refuse_constant(name: str) -> object:
    """NaN and Infinity are Python's JSON extensions, not JSON: jsonb refuses them."""
    raise ValueError(f"{name} is not JSON")
