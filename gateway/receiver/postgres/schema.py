"""The PostgreSQL store's schema: versioned migrations and the readings' day partitions.

Storage is normalised where the volume is (a `series` dimension, readings and windows keyed by
series_id and batch_id); views named like the SQLite store's tables (`readings`, `windows`, `gaps`,
`events`, `clock_corrections`, `readings_corrected`) give the same columns, so a query written against
the SQLite store runs unchanged. NaN is stored as NaN in the fixed-width tables (binary COPY needs no
per-value NULL test) and the views turn it into NULL, as SQLite has it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from psycopg import Connection
from psycopg.rows import TupleRow

from kernel.errors import StorageError

#: pg_advisory_xact_lock keys: receivers starting together migrate one after the other, and create a day's
#: partition once (arbitrary constants, "gw-schema" and "gw-parts" in ASCII)
SCHEMA_LOCK = 0x67772D736368656D
PARTITION_LOCK = 0x67772D7061727473

DAY_MS = 86_400_000
#: readings from 2000-01-01 to 2100-01-01 get a partition per UTC day; the rest (a gateway without a real
#: time clock stamps 1970 until NTP answers) land in `reading_rows_before_2000` or `reading_rows_from_2100`.
#: No DEFAULT partition: rows of a day without a partition (dropped for retention while a receiver still
#: knew it) fail loudly and the store recreates it, where a default partition would take them and then
#: refuse the day's partition forever.
PARTITIONED_FROM_MS = 946_684_800_000
PARTITIONED_UNTIL_MS = 4_102_444_800_000

#: a day partition's bound as pg_get_expr shows it
_DAY_BOUND = re.compile(r"FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")

# a NaN statistic or value is stored as NaN; the views show NULL as the SQLite store does
_NULL_IF_NAN = "nullif({0}, 'NaN'::float8) AS {0}"
_WINDOW_FLOATS = ", ".join(_NULL_IF_NAN.format(c) for c in ("min", "max", "mean", "std", "first", "last"))

_TABLES = f"""
CREATE TABLE batches (
    gateway_id text NOT NULL, seq bigint NOT NULL, kid bytea NOT NULL, digest bytea NOT NULL,
    created_ms bigint NOT NULL, received_ms bigint NOT NULL, readings integer NOT NULL,
    epoch bytea NOT NULL,
    -- the signed bytes as they arrived: any stored reading can be re-verified from them (already
    -- zstd-compressed, so PostgreSQL does not try to compress them again)
    signed bytea NOT NULL,
    batch_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    UNIQUE (gateway_id, epoch, seq)
);
ALTER TABLE batches ALTER COLUMN signed SET STORAGE EXTERNAL;
CREATE TABLE series (
    series_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway_id text NOT NULL, sensor text NOT NULL, quantity text NOT NULL, unit text NOT NULL,
    UNIQUE (gateway_id, sensor, quantity, unit)
);
CREATE TABLE reading_rows (
    series_id integer NOT NULL, ts_ms bigint NOT NULL, value float8 NOT NULL, quality integer NOT NULL,
    batch_id bigint NOT NULL
) PARTITION BY RANGE (ts_ms);
CREATE TABLE reading_rows_before_2000 PARTITION OF reading_rows FOR VALUES FROM (MINVALUE) TO ({PARTITIONED_FROM_MS});
CREATE TABLE reading_rows_from_2100 PARTITION OF reading_rows FOR VALUES FROM ({PARTITIONED_UNTIL_MS}) TO (MAXVALUE);
CREATE INDEX reading_rows_by_series ON reading_rows (series_id, ts_ms);
CREATE TABLE window_rows (
    series_id integer NOT NULL, window_start bigint NOT NULL, window_ms bigint NOT NULL, rev integer NOT NULL,
    count bigint NOT NULL, nan_count bigint NOT NULL, min float8 NOT NULL, max float8 NOT NULL,
    mean float8 NOT NULL, std float8 NOT NULL, first float8 NOT NULL, last float8 NOT NULL,
    first_ts bigint NOT NULL, last_ts bigint NOT NULL, batch_id bigint NOT NULL,
    PRIMARY KEY (series_id, window_start, window_ms)
);
CREATE TABLE gap_rows (
    series_id integer NOT NULL, from_ms bigint NOT NULL, to_ms bigint NOT NULL, count bigint NOT NULL,
    reason text NOT NULL, batch_id bigint NOT NULL
);
-- detail_json: the detail parsed when it is a JSON object (NULL otherwise), so a malformed detail
-- can never make the clock_corrections view fail
CREATE TABLE event_rows (
    ts_ms bigint NOT NULL, source text NOT NULL, kind text NOT NULL, detail text NOT NULL,
    detail_json jsonb, batch_id bigint NOT NULL
);
CREATE INDEX event_rows_clock ON event_rows (batch_id) WHERE source = 'clock';
CREATE TABLE quarantine (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, received_ms bigint NOT NULL, reason text NOT NULL,
    retryable boolean NOT NULL, detail text NOT NULL, gateway_id text, kid bytea, digest bytea,
    size integer NOT NULL, blob bytea NOT NULL
);
CREATE UNIQUE INDEX quarantine_retryable_digest ON quarantine (digest)
    WHERE retryable AND digest IS NOT NULL;
CREATE TABLE keys (
    kid bytea PRIMARY KEY, gateway_id text NOT NULL, public_key bytea NOT NULL, added_ms bigint NOT NULL,
    source text NOT NULL, revoked_ms bigint
);
"""

_VIEWS = f"""
CREATE VIEW readings AS
SELECT s.gateway_id, s.sensor, s.quantity, s.unit, r.ts_ms, nullif(r.value, 'NaN'::float8) AS value,
    r.quality, b.seq, b.epoch
FROM reading_rows r JOIN series s USING (series_id) JOIN batches b USING (batch_id);
CREATE VIEW windows AS
SELECT s.gateway_id, s.sensor, s.quantity, s.unit, w.window_start, w.window_ms, w.rev, w.count,
    w.nan_count, {_WINDOW_FLOATS}, w.first_ts, w.last_ts, b.seq, b.epoch
FROM window_rows w JOIN series s USING (series_id) JOIN batches b USING (batch_id);
CREATE VIEW gaps AS
SELECT s.gateway_id, s.sensor, s.quantity, s.unit, g.from_ms, g.to_ms, g.count, g.reason, b.seq, b.epoch
FROM gap_rows g JOIN series s USING (series_id) JOIN batches b USING (batch_id);
CREATE VIEW events AS
SELECT b.gateway_id, e.ts_ms, e.source, e.kind, e.detail, b.seq, b.epoch
FROM event_rows e JOIN batches b USING (batch_id);
-- the clock events with the facts the corrections need, from the parsed detail
CREATE VIEW clock_events AS
SELECT b.gateway_id, b.epoch, b.seq, e.kind, e.detail_json ->> 'boot' AS boot,
    CASE WHEN jsonb_typeof(e.detail_json -> 'step_ms') = 'number'
         THEN (e.detail_json ->> 'step_ms')::numeric::bigint END AS step_ms
FROM event_rows e JOIN batches b USING (batch_id) WHERE e.source = 'clock';
-- each time a gateway's clock got synchronised: the batches (from_seq..to_seq of one epoch) whose
-- readings flagged CLOCK_UNSYNCED are step_ms off. from_seq is the first clock.unsynchronised event of
-- the same boot since that boot's previous clock.synchronised one (docs/buffer.md, "Clock"); the
-- SQLite store's view, ported
CREATE VIEW clock_corrections AS
SELECT s.gateway_id, s.epoch, s.boot,
    (SELECT min(u.seq) FROM clock_events u
     WHERE u.gateway_id = s.gateway_id AND u.epoch = s.epoch AND u.kind = 'clock.unsynchronised'
       AND u.boot = s.boot AND u.seq <= s.seq
       AND u.seq > coalesce((SELECT max(p.seq) FROM clock_events p
           WHERE p.gateway_id = s.gateway_id AND p.epoch = s.epoch AND p.kind = 'clock.synchronised'
             AND p.boot = s.boot AND p.seq < s.seq), -1)) AS from_seq,
    s.seq AS to_seq, s.step_ms
FROM clock_events s WHERE s.kind = 'clock.synchronised';
-- the readings with the timestamps of flagged ones corrected where a correction is known (quality keeps
-- the flag: the reading was taken on an unsynchronised clock)
CREATE VIEW readings_corrected AS
SELECT r.gateway_id, r.sensor, r.quantity, r.unit,
    r.ts_ms + CASE WHEN r.quality & 2 <> 0 THEN coalesce((SELECT c.step_ms FROM clock_corrections c
        WHERE c.gateway_id = r.gateway_id AND c.epoch = r.epoch AND r.seq BETWEEN c.from_seq AND c.to_seq
        ORDER BY c.to_seq LIMIT 1), 0) ELSE 0 END AS ts_ms,
    r.value, r.quality, r.seq, r.epoch
FROM readings r;
"""


# series catalogues (wire version 4) as verified batches declared them: the deterministic CBOR of the
# table, to decode the gateway's later batches that only name the catalogue
_CATALOGUES = """
CREATE TABLE catalogues (
    gateway_id text NOT NULL, catalogue bytea NOT NULL, series_table bytea NOT NULL,
    declared_ms bigint NOT NULL, PRIMARY KEY (gateway_id, catalogue)
);
"""


# the kid's first 4 bytes, by which compact envelopes name a key (docs/wire-format.md 7): unique, so
# two receivers can never register two keys a compact envelope cannot tell apart. Keys that shared a
# hint before this migration get none (their compact envelopes find no key and wait in the quarantine;
# their tagged ones still verify) until one of the gateways gets a new key
_KEY_HINTS = """
ALTER TABLE keys ADD COLUMN hint bytea;
UPDATE keys SET hint = substring(kid FROM 1 FOR 4) WHERE substring(kid FROM 1 FOR 4) IN
    (SELECT substring(kid FROM 1 FOR 4) FROM keys GROUP BY 1 HAVING count(*) = 1);
CREATE UNIQUE INDEX keys_by_hint ON keys (hint);
"""


@dataclass(frozen=True)
class Migration:
    """One step of the schema: applied once, in order, recorded in schema_version."""

    version: int
    description: str
    sql: str


MIGRATIONS = (
    Migration(1, "batches, series, readings partitioned by day, windows, gaps, events, quarantine, keys, "
              "views named like the SQLite store's tables", _TABLES + _VIEWS),
    Migration(2, "series catalogues per gateway (wire version 4)", _CATALOGUES),
    Migration(3, "keys found by their 4-byte hint (compact envelopes)", _KEY_HINTS),
)  # fmt: skip
SCHEMA_VERSION = MIGRATIONS[-1].version


def migrate(conn: Connection[TupleRow]) -> int:
    """Bring the database to SCHEMA_VERSION in one transaction under an advisory lock, so receivers
    started together wait for the first one instead of racing; returns the version found before."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
            " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise StorageError(
                f"the database has schema version {found}, this receiver knows up to {SCHEMA_VERSION}:"
                " upgrade the receiver"
            )
        for step in MIGRATIONS[found:]:
            conn.execute(step.sql.encode())
            conn.execute(
                "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                (step.version, step.description),
            )
    return found


def partition_days(ts_ms: npt.NDArray[np.int64]) -> set[int]:
    """The UTC days (days since 1970) that have a partition of their own among these timestamps."""
    inside = ts_ms[(ts_ms >= PARTITIONED_FROM_MS) & (ts_ms < PARTITIONED_UNTIL_MS)]
    return set(np.unique(inside // DAY_MS).tolist())


def partition_name(day: int) -> str:
    """reading_rows_dYYYYMMDD."""
    return "reading_rows_d" + datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y%m%d")


def existing_partition_days(conn: Connection[TupleRow]) -> set[int]:
    """The days that already have a partition of their own, from the partitions' bounds (read once per
    connection, then kept up to date; a connection in autocommit mode)."""
    rows = conn.execute(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'reading_rows'::regclass"
    ).fetchall()
    days = set()
    for (bound,) in rows:
        found = _DAY_BOUND.fullmatch(str(bound))
        if found and int(found[2]) - int(found[1]) == DAY_MS and int(found[1]) % DAY_MS == 0:
            days.add(int(found[1]) // DAY_MS)
    return days


def create_partitions(conn: Connection[TupleRow], days: set[int]) -> None:
    """Create the missing day partitions in their own transaction, BEFORE the group commit that needs
    them: creating one locks the parent table, which must not happen while this connection holds rows
    of an open group commit (other receivers would wait on it and it on them)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for day in sorted(days):
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF reading_rows"
                f" FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})".encode()
            )
