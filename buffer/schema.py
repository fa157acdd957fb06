"""The database layout and how every connection of the store is configured.

Readings are stored one row per group commit (`chunk`), packed and compressed by buffer/chunk.py. docs/buffer.md gives the measurements behind that choice.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.errors import StorageError

SCHEMA_VERSION = 2  # 2: outbox_series
PAGE_SIZE = 1024
BUSY_TIMEOUT_MS = 10_000

_DDL = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    sensor TEXT NOT NULL,
    quantity TEXT NOT NULL,
    unit TEXT NOT NULL,
    UNIQUE (sensor, quantity, unit)
);
-- one row per group commit (buffer/chunk.py): the first `done` readings in ts order are batched
CREATE TABLE IF NOT EXISTS chunk (
    id INTEGER PRIMARY KEY,
    n INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    next_ts INTEGER NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    scale INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS gap (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    reason TEXT NOT NULL,
    batch_seq INTEGER
);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    batch_seq INTEGER
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    blob BLOB NOT NULL,
    readings INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
-- per series of each outbox batch, the range its readings cover: if the batch has to be dropped
-- (full disk, drop_oldest) these become the gap records that tell the backend what is missing
CREATE TABLE IF NOT EXISTS outbox_series (
    seq INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (seq, series_id)
) WITHOUT ROWID;
-- revision numbers of windows revised after their first emission (buffer/windowstate.py)
CREATE TABLE IF NOT EXISTS window_rev (
    sensor TEXT NOT NULL,
    quantity TEXT NOT NULL,
    unit TEXT NOT NULL,
    window_ms INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    rev INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (sensor, quantity, unit, window_ms, window_start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""

#: meta keys
LAST_SEQ = "last_seq"  # highest seq ever sealed (outbox rows are deleted on delivery)
BATCHED_BELOW = "batched_below"  # every chunk with a smaller id is fully batched
WINDOW_WATERMARK = "window_watermark"  # windowing clock of the last sealed batch (absent: never)


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open one connection of the store: WAL, explicit transactions, usable from any one thread at a time."""
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,
        check_same_thread=False,
        timeout=BUSY_TIMEOUT_MS / 1000,
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


class NewerSchema(StorageError):
    """The buffer was written by a newer version: refused, never quarantined (its batches are not lost)."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"the buffer has schema version {version}, written by a newer gateway version; this one reads"
            f" up to {SCHEMA_VERSION}. Reinstall the newer package, or move the buffer aside to start an"
            " empty one (its undelivered batches are then not sent): docs/service.md, Rollback"
        )
        self.version = version


def create(conn: sqlite3.Connection) -> None:
    """Create or migrate the schema; a fresh file gets the page size and WAL mode first."""
    fresh = conn.execute("PRAGMA page_count").fetchone()[0] == 0
    if fresh:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise NewerSchema(version)
    if version == SCHEMA_VERSION:
        return  # nothing to write: an up-to-date buffer opens even on a full disk
    conn.execute("BEGIN IMMEDIATE")
    for statement in _DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, 0)", (LAST_SEQ,))
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, 0)", (BATCHED_BELOW,))
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    conn.execute("COMMIT")


def meta(conn: sqlite3.Connection, key: str) -> int:
    """Read one integer of the meta table."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def set_meta(conn: sqlite3.Connection, key: str, value: int) -> None:
    """Write one integer of the meta table (inside the caller's transaction)."""
    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of pages in use: what the quota limits (free pages are reused, not counted)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)
