"""The SQLite store's schema and its versioned migrations (PRAGMA user_version)."""

from __future__ import annotations

import sqlite3

#: the schema version this code writes; 0 is the pre-epoch layout (batches keyed by gateway id, seq),
#: 1 the wide readings table (four text columns and the epoch per reading), 2 without `catalogues`,
#: 3 without the keys' `hint` (the kid's first 4 bytes, by which compact envelopes name a key)
SCHEMA_VERSION = 4
ZERO_EPOCH = "x'00000000000000000000000000000000'"

TABLES = f"""
CREATE TABLE IF NOT EXISTS batches (
    gateway_id TEXT NOT NULL, seq INTEGER NOT NULL, kid BLOB NOT NULL, digest BLOB NOT NULL,
    created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, readings INTEGER NOT NULL,
    epoch BLOB NOT NULL DEFAULT {ZERO_EPOCH},
    -- the signed bytes as they arrived: any stored reading can be re-verified from them
    signed BLOB,
    PRIMARY KEY (gateway_id, epoch, seq)
) WITHOUT ROWID;
-- a small number per stored batch for reading_rows to refer to (1, 2, ... in commit order)
CREATE TABLE IF NOT EXISTS batch_refs (
    batch_id INTEGER PRIMARY KEY, gateway_id TEXT NOT NULL, epoch BLOB NOT NULL, seq INTEGER NOT NULL
);
-- the series dimension: readings name their series by a small integer, not by four strings
CREATE TABLE IF NOT EXISTS series (
    series_id INTEGER PRIMARY KEY, gateway_id TEXT NOT NULL, sensor TEXT NOT NULL,
    quantity TEXT NOT NULL, unit TEXT NOT NULL, UNIQUE (gateway_id, sensor, quantity, unit)
);
-- the readings, narrow (the `readings` view gives them the columns of schema version 1)
CREATE TABLE IF NOT EXISTS reading_rows (
    series_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL,
    batch_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reading_rows_by_series ON reading_rows (series_id, ts_ms);
CREATE TABLE IF NOT EXISTS windows (
    gateway_id TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    window_start INTEGER NOT NULL, window_ms INTEGER NOT NULL, rev INTEGER NOT NULL,
    count INTEGER NOT NULL, nan_count INTEGER NOT NULL, min REAL, max REAL, mean REAL, std REAL,
    first REAL, last REAL, first_ts INTEGER, last_ts INTEGER, seq INTEGER NOT NULL,
    epoch BLOB NOT NULL DEFAULT {ZERO_EPOCH},
    PRIMARY KEY (gateway_id, sensor, quantity, window_start, window_ms)
);
CREATE TABLE IF NOT EXISTS gaps (
    gateway_id TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL, count INTEGER NOT NULL, reason TEXT NOT NULL,
    seq INTEGER NOT NULL, epoch BLOB NOT NULL DEFAULT {ZERO_EPOCH}
);
CREATE TABLE IF NOT EXISTS events (
    gateway_id TEXT NOT NULL, ts_ms INTEGER NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, seq INTEGER NOT NULL, epoch BLOB NOT NULL DEFAULT {ZERO_EPOCH}
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, reason TEXT NOT NULL, retryable INTEGER NOT NULL,
    detail TEXT NOT NULL, gateway_id TEXT, kid BLOB, digest BLOB, size INTEGER NOT NULL, blob BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_retryable_digest ON quarantine (digest)
    WHERE retryable AND digest IS NOT NULL;
-- series catalogues (wire version 4) as verified batches declared them: the deterministic CBOR of
-- the table, to decode the gateway's later batches that only name the catalogue
CREATE TABLE IF NOT EXISTS catalogues (
    gateway_id TEXT NOT NULL, catalogue BLOB NOT NULL, series_table BLOB NOT NULL,
    declared_ms INTEGER NOT NULL, PRIMARY KEY (gateway_id, catalogue)
) WITHOUT ROWID;
-- hint: the kid's first 4 bytes, by which compact envelopes name the key (docs/wire-format.md 7);
-- NULL only for keys that shared one with another key when the database was upgraded
CREATE TABLE IF NOT EXISTS keys (
    kid BLOB PRIMARY KEY, gateway_id TEXT NOT NULL, public_key BLOB NOT NULL, added_ms INTEGER NOT NULL,
    source TEXT NOT NULL, revoked_ms INTEGER, hint BLOB
);
"""

# after the tables (and _MIGRATE_3_TO_4) exist: no two keys with the same hint
KEY_HINT_INDEX = """
CREATE UNIQUE INDEX IF NOT EXISTS keys_by_hint ON keys (hint);
"""

# version 3 -> 4: the keys get their hint, unless two keys registered before share one: then neither
# has it (a compact envelope with it finds no key and waits in the quarantine; their tagged ones, with
# the whole kid, still verify) until one of the gateways gets a new key
_MIGRATE_3_TO_4 = """
ALTER TABLE keys ADD COLUMN hint BLOB;
UPDATE keys SET hint = substr(kid, 1, 4)
    WHERE substr(kid, 1, 4) NOT IN (SELECT substr(kid, 1, 4) FROM keys GROUP BY 1 HAVING count(*) > 1);
"""

# each time a gateway's clock got synchronised: the batches (from_seq..to_seq of one epoch) whose
# readings flagged CLOCK_UNSYNCED are step_ms off. from_seq is the first clock.unsynchronised event of
# the same boot since that boot's previous clock.synchronised one (docs/buffer.md, "Clock")
VIEWS = """
DROP VIEW IF EXISTS readings_corrected;
DROP VIEW IF EXISTS clock_corrections;
DROP VIEW IF EXISTS readings;
CREATE VIEW readings AS
SELECT s.gateway_id AS gateway_id, s.sensor AS sensor, s.quantity AS quantity, s.unit AS unit,
    r.ts_ms AS ts_ms, r.value AS value, r.quality AS quality, b.seq AS seq, b.epoch AS epoch
FROM reading_rows r JOIN series s ON s.series_id = r.series_id JOIN batch_refs b ON b.batch_id = r.batch_id;
CREATE VIEW clock_corrections AS
SELECT s.gateway_id AS gateway_id, s.epoch AS epoch, json_extract(s.detail, '$.boot') AS boot,
    (SELECT min(u.seq) FROM events u
     WHERE u.gateway_id = s.gateway_id AND u.epoch = s.epoch AND u.source = 'clock'
       AND u.kind = 'clock.unsynchronised'
       AND json_extract(u.detail, '$.boot') = json_extract(s.detail, '$.boot') AND u.seq <= s.seq
       AND u.seq > coalesce((SELECT max(p.seq) FROM events p
           WHERE p.gateway_id = s.gateway_id AND p.epoch = s.epoch AND p.source = 'clock'
             AND p.kind = 'clock.synchronised'
             AND json_extract(p.detail, '$.boot') = json_extract(s.detail, '$.boot')
             AND p.seq < s.seq), -1)) AS from_seq,
    s.seq AS to_seq, json_extract(s.detail, '$.step_ms') AS step_ms
FROM events s WHERE s.source = 'clock' AND s.kind = 'clock.synchronised';
-- the readings with the timestamps of flagged ones corrected where a correction is known (quality keeps
-- the flag: the reading was taken on an unsynchronised clock)
CREATE VIEW readings_corrected AS
SELECT r.gateway_id, r.sensor, r.quantity, r.unit,
    r.ts_ms + coalesce((SELECT c.step_ms FROM clock_corrections c
        WHERE r.quality & 2 AND c.gateway_id = r.gateway_id AND c.epoch = r.epoch
          AND r.seq BETWEEN c.from_seq AND c.to_seq
        ORDER BY c.to_seq LIMIT 1), 0) AS ts_ms,
    r.value, r.quality, r.seq, r.epoch
FROM readings r;
"""

# version 0 -> 1: the batch identity gains the epoch (a rebuilt batches table: SQLite cannot change a
# primary key), every row an epoch column (the zero epoch: those batches were version 1)
_MIGRATE_0_TO_1 = f"""
ALTER TABLE batches RENAME TO batches_v0;
CREATE TABLE batches (
    gateway_id TEXT NOT NULL, seq INTEGER NOT NULL, kid BLOB NOT NULL, digest BLOB NOT NULL,
    created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, readings INTEGER NOT NULL,
    epoch BLOB NOT NULL DEFAULT {ZERO_EPOCH}, signed BLOB,
    PRIMARY KEY (gateway_id, epoch, seq)
) WITHOUT ROWID;
INSERT INTO batches (gateway_id, seq, kid, digest, created_ms, received_ms, readings)
    SELECT gateway_id, seq, kid, digest, created_ms, received_ms, readings FROM batches_v0;
DROP TABLE batches_v0;
ALTER TABLE readings ADD COLUMN epoch BLOB NOT NULL DEFAULT {ZERO_EPOCH};
ALTER TABLE windows ADD COLUMN epoch BLOB NOT NULL DEFAULT {ZERO_EPOCH};
ALTER TABLE gaps ADD COLUMN epoch BLOB NOT NULL DEFAULT {ZERO_EPOCH};
ALTER TABLE events ADD COLUMN epoch BLOB NOT NULL DEFAULT {ZERO_EPOCH};
"""

# version 1 -> 2: the readings move into the narrow reading_rows (series id, ts, value, quality,
# batch id) behind a `readings` view with the old columns. Why: the wide table's index on three
# text columns was about half of the store's CPU (6 us a reading of the receiver's 17-20); stored
# batches are numbered in the order they arrived
_MIGRATE_1_TO_2 = """
DROP VIEW IF EXISTS readings_corrected;
"""

# after the tables of version 2 exist: the old readings moved over, the old table dropped
_MOVE_READINGS_1_TO_2 = """
INSERT INTO batch_refs (gateway_id, epoch, seq)
    SELECT gateway_id, epoch, seq FROM batches ORDER BY received_ms, gateway_id, epoch, seq;
INSERT OR IGNORE INTO series (gateway_id, sensor, quantity, unit)
    SELECT DISTINCT gateway_id, sensor, quantity, unit FROM readings;
INSERT INTO reading_rows (series_id, ts_ms, value, quality, batch_id)
    SELECT s.series_id, r.ts_ms, r.value, r.quality, b.batch_id FROM readings r
    JOIN series s ON s.gateway_id = r.gateway_id AND s.sensor = r.sensor AND s.quantity = r.quantity
        AND s.unit = r.unit
    JOIN batch_refs b ON b.gateway_id = r.gateway_id AND b.epoch = r.epoch AND b.seq = r.seq
    ORDER BY r.rowid;
DROP TABLE readings;
"""


def migrate(db: sqlite3.Connection) -> None:
    """Bring the database to SCHEMA_VERSION in one transaction (a fresh file gets the tables)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    has_batches = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'batches'").fetchone()
    db.execute("BEGIN IMMEDIATE")
    try:
        steps = [TABLES, VIEWS]
        if version <= 1 and has_batches is not None:
            steps = [_MIGRATE_1_TO_2, TABLES, _MOVE_READINGS_1_TO_2, VIEWS]
        if version == 0 and has_batches is not None:
            steps.insert(0, _MIGRATE_0_TO_1)
        if _keys_without_hint(db):  # a keys table before version 4 (version 0 had none)
            steps.insert(steps.index(TABLES) + 1, _MIGRATE_3_TO_4)
        steps.append(KEY_HINT_INDEX)
        for script in steps:
            for statement in script.split(";\n"):
                if statement.strip():
                    db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _keys_without_hint(db: sqlite3.Connection) -> bool:
    columns = {row[1] for row in db.execute("PRAGMA table_info(keys)")}
    return bool(columns) and "hint" not in columns
