"""The receiver's SQLite database: accepted batches, readings, windows (with revisions), gaps and events."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from enum import Enum
from pathlib import Path

from gateway.errors import StorageError
from gateway.wire import Batch

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    gateway_id TEXT NOT NULL, seq INTEGER NOT NULL, kid BLOB NOT NULL, digest BLOB NOT NULL,
    created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, readings INTEGER NOT NULL,
    epoch BLOB NOT NULL,
    PRIMARY KEY (gateway_id, epoch, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings (
    gateway_id TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL, seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_by_series ON readings (gateway_id, sensor, quantity, ts_ms);
CREATE TABLE IF NOT EXISTS windows (
    gateway_id TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    window_start INTEGER NOT NULL, window_ms INTEGER NOT NULL, rev INTEGER NOT NULL,
    count INTEGER NOT NULL, nan_count INTEGER NOT NULL, min REAL, max REAL, mean REAL, std REAL,
    first REAL, last REAL, first_ts INTEGER, last_ts INTEGER, seq INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, sensor, quantity, window_start, window_ms)
);
CREATE TABLE IF NOT EXISTS gaps (
    gateway_id TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL, count INTEGER NOT NULL, reason TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    gateway_id TEXT NOT NULL, ts_ms INTEGER NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, seq INTEGER NOT NULL
);
-- each time a gateway's clock got synchronised: the batches (from_seq..to_seq) whose readings flagged
-- CLOCK_UNSYNCED are step_ms off. from_seq is the first clock.unsynchronised event of the same boot
-- since that boot's previous clock.synchronised one (docs/buffer.md, "Clock")
CREATE VIEW IF NOT EXISTS clock_corrections AS
SELECT s.gateway_id AS gateway_id, json_extract(s.detail, '$.boot') AS boot,
    (SELECT min(u.seq) FROM events u
     WHERE u.gateway_id = s.gateway_id AND u.source = 'clock' AND u.kind = 'clock.unsynchronised'
       AND json_extract(u.detail, '$.boot') = json_extract(s.detail, '$.boot') AND u.seq <= s.seq
       AND u.seq > coalesce((SELECT max(p.seq) FROM events p
           WHERE p.gateway_id = s.gateway_id AND p.source = 'clock' AND p.kind = 'clock.synchronised'
             AND json_extract(p.detail, '$.boot') = json_extract(s.detail, '$.boot')
             AND p.seq < s.seq), -1)) AS from_seq,
    s.seq AS to_seq, json_extract(s.detail, '$.step_ms') AS step_ms
FROM events s WHERE s.source = 'clock' AND s.kind = 'clock.synchronised';
-- the readings with the timestamps of flagged ones corrected where a correction is known (quality keeps
-- the flag: the reading was taken on an unsynchronised clock)
CREATE VIEW IF NOT EXISTS readings_corrected AS
SELECT r.gateway_id, r.sensor, r.quantity, r.unit,
    r.ts_ms + coalesce((SELECT c.step_ms FROM clock_corrections c
        WHERE r.quality & 2 AND c.gateway_id = r.gateway_id AND r.seq BETWEEN c.from_seq AND c.to_seq
        ORDER BY c.to_seq LIMIT 1), 0) AS ts_ms,
    r.value, r.quality, r.seq
FROM readings r;
"""


class Outcome(Enum):
    """What the database made of one verified batch."""

    STORED = "stored"
    DUPLICATE = "duplicate"  # the same bytes again: at-least-once delivery, dropped
    REPLAY = "replay"  # a seq already stored with different bytes: rejected


class ReceiverDatabase:
    """Stores verified batches exactly once per (gateway id, seq); one connection, one thread at a time."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"receiver database {path}: {exc}") from None

    def store(self, batch: Batch, blob: bytes) -> Outcome:
        """Store a verified batch in one transaction, unless its (gateway id, seq) is already there."""
        digest = hashlib.sha256(blob).digest()
        try:
            row = self._db.execute(
                "SELECT digest FROM batches WHERE gateway_id = ? AND epoch = ? AND seq = ?",
                (batch.gateway_id, batch.epoch, batch.seq),
            ).fetchone()
            if row is not None:
                return Outcome.DUPLICATE if bytes(row[0]) == digest else Outcome.REPLAY
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._insert(batch, digest)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"receiver database: {exc}") from None
        return Outcome.STORED

    def _insert(self, batch: Batch, digest: bytes) -> None:
        gid, seq = batch.gateway_id, batch.seq
        names = [(s.sensor, s.quantity, s.unit) for s in batch.series]
        r = batch.readings
        self._db.execute(
            "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                gid,
                seq,
                batch.kid,
                digest,
                batch.created_ms,
                time.time_ns() // 1_000_000,
                len(r.ts_ms),
                batch.epoch,
            ),
        )
        self._db.executemany(
            "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (gid, *names[s], t, _nan_to_null(v), q, seq)
                for s, t, v, q in zip(
                    r.series.tolist(), r.ts_ms.tolist(), r.value.tolist(), r.quality.tolist(), strict=True
                )
            ),
        )
        self._insert_windows(batch, names)
        self._db.executemany(
            "INSERT INTO gaps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((gid, *names[g.series], g.from_ms, g.to_ms, g.count, g.reason, seq) for g in batch.gaps),
        )
        self._db.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
            ((gid, e.ts_ms, e.source, e.kind, e.detail, seq) for e in batch.events),
        )

    def _insert_windows(self, batch: Batch, names: list[tuple[str, str, str]]) -> None:
        """Upsert windows: a higher revision supersedes the stored one, a lower or equal one is ignored."""
        w = batch.windows
        columns = (
            w.series, w.window_start, w.window_ms, w.rev, w.count, w.nan_count,
            w.min, w.max, w.mean, w.std, w.first, w.last, w.first_ts, w.last_ts,
        )  # fmt: skip
        rows = zip(*(c.tolist() for c in columns), strict=True)
        self._db.executemany(
            """INSERT INTO windows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (gateway_id, sensor, quantity, window_start, window_ms) DO UPDATE SET
               rev = excluded.rev, count = excluded.count, nan_count = excluded.nan_count,
               min = excluded.min, max = excluded.max, mean = excluded.mean, std = excluded.std,
               first = excluded.first, last = excluded.last, first_ts = excluded.first_ts,
               last_ts = excluded.last_ts, seq = excluded.seq
               WHERE excluded.rev > windows.rev""",
            (
                (batch.gateway_id, *names[row[0]], *row[1:4], *(_nan_to_null(v) for v in row[4:]), batch.seq)
                for row in rows
            ),
        )

    def count_readings(self, gateway_id: str | None = None) -> int:
        """How many readings are stored (for one gateway, or all)."""
        if gateway_id is None:
            return int(self._db.execute("SELECT count(*) FROM readings").fetchone()[0])
        query = "SELECT count(*) FROM readings WHERE gateway_id = ?"
        return int(self._db.execute(query, (gateway_id,)).fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def _nan_to_null(value: float | int) -> float | int | None:
    """SQLite has no NaN: a missing statistic or reading is stored as NULL."""
    return None if isinstance(value, float) and math.isnan(value) else value
