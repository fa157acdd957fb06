"""The SQLite store's schema migration: a receiver database from before the epoch keeps its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway import wire
from gateway.receiver import Arrival, Outcome, ReceiverCore, RegisteredKey, SqliteStore
from gateway.receiver.sqlite_schema import SCHEMA_VERSION
from hil.fleet import SimulatedGateway

#: the tables as the receiver wrote them before schema version 1 (PRAGMA user_version 0)
VERSION_0 = """
CREATE TABLE batches (
    gateway_id TEXT NOT NULL, seq INTEGER NOT NULL, kid BLOB NOT NULL, digest BLOB NOT NULL,
    created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, readings INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, seq)
) WITHOUT ROWID;
CREATE TABLE readings (
    gateway_id TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL, seq INTEGER NOT NULL
);
CREATE TABLE windows (
    gateway_id TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    window_start INTEGER NOT NULL, window_ms INTEGER NOT NULL, rev INTEGER NOT NULL,
    count INTEGER NOT NULL, nan_count INTEGER NOT NULL, min REAL, max REAL, mean REAL, std REAL,
    first REAL, last REAL, first_ts INTEGER, last_ts INTEGER, seq INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, sensor, quantity, window_start, window_ms)
);
CREATE TABLE gaps (
    gateway_id TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL, count INTEGER NOT NULL, reason TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE events (
    gateway_id TEXT NOT NULL, ts_ms INTEGER NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL, seq INTEGER NOT NULL
);
INSERT INTO batches VALUES ('gw-1', 7, x'0102030405060708', x'00', 1, 2, 1);
INSERT INTO readings VALUES ('gw-1', 'dust-1', 'pm10', 'ug/m3', 1000, 4.5, 0, 7);
"""


def test_a_version_0_database_is_migrated_and_its_rows_get_the_zero_epoch(tmp_path: Path) -> None:
    db = tmp_path / "received.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(VERSION_0)
    store = SqliteStore(db)
    gw = SimulatedGateway("gw-1", epoch=wire.NO_EPOCH)
    core = ReceiverCore(store)
    core.enrol(RegisteredKey(gw.kid, "gw-1", gw.public_raw, 0, "cli"))
    assert core.receive(Arrival(gw.batch(seq=7), "gw-1", 5)).result is Outcome.REPLAY  # seq 7 is taken
    assert core.receive(Arrival(gw.batch(seq=8), "gw-1", 5)).result is Outcome.STORED
    store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        rows = conn.execute("SELECT seq, epoch FROM batches ORDER BY seq").fetchall()
        old = conn.execute("SELECT value, epoch FROM readings WHERE seq = 7").fetchall()
    assert rows == [(7, wire.NO_EPOCH), (8, wire.NO_EPOCH)]
    assert old == [(4.5, wire.NO_EPOCH)]
    SqliteStore(db).close()  # opening again changes nothing


#: the wide readings table of schema version 1 (user_version 1), with one stored batch
VERSION_1 = """
CREATE TABLE batches (
    gateway_id TEXT NOT NULL, seq INTEGER NOT NULL, kid BLOB NOT NULL, digest BLOB NOT NULL,
    created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, readings INTEGER NOT NULL,
    epoch BLOB NOT NULL DEFAULT x'00000000000000000000000000000000', signed BLOB,
    PRIMARY KEY (gateway_id, epoch, seq)
) WITHOUT ROWID;
CREATE TABLE readings (
    gateway_id TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL, seq INTEGER NOT NULL,
    epoch BLOB NOT NULL DEFAULT x'00000000000000000000000000000000'
);
CREATE INDEX readings_by_series ON readings (gateway_id, sensor, quantity, ts_ms);
INSERT INTO batches VALUES ('gw-1', 3, x'0102030405060708', x'00', 1, 2, 2, x'0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', NULL);
INSERT INTO readings VALUES ('gw-1', 'dust-1', 'pm10', 'ug/m3', 1000, 4.5, 0, 3, x'0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a');
INSERT INTO readings VALUES ('gw-1', 'dust-1', 'pm10', 'ug/m3', 2000, NULL, 1, 3, x'0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a');
PRAGMA user_version = 1;
"""


def test_a_version_1_database_keeps_its_readings_behind_the_readings_view(tmp_path: Path) -> None:
    db = tmp_path / "received.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(VERSION_1)
    store = SqliteStore(db)
    gw = SimulatedGateway("gw-1", series=2)
    core = ReceiverCore(store)
    core.enrol(RegisteredKey(gw.kid, "gw-1", gw.public_raw, 0, "cli"))
    assert core.receive(Arrival(gw.batch(3), "gw-1", 5)).result is Outcome.STORED
    store.close()
    epoch = bytes([10] * 16)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        old = conn.execute(
            "SELECT gateway_id, sensor, quantity, unit, ts_ms, value, quality, seq, epoch FROM readings"
            " WHERE epoch = ? ORDER BY ts_ms",
            (epoch,),
        ).fetchall()
        new = conn.execute("SELECT count(*) FROM readings WHERE epoch = ?", (gw.epoch,)).fetchone()
        kinds = dict(conn.execute("SELECT name, type FROM sqlite_master WHERE name = 'readings'").fetchall())
    assert old == [
        ("gw-1", "dust-1", "pm10", "ug/m3", 1000, 4.5, 0, 3, epoch),
        ("gw-1", "dust-1", "pm10", "ug/m3", 2000, None, 1, 3, epoch),
    ]
    assert new == (2 * 3,)
    assert kinds == {"readings": "view"}
    SqliteStore(db).close()  # opening again changes nothing
