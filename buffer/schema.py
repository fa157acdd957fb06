"""The database layout and how every connection of the store is configured.

Readings are stored one row per group commit (`chunk`), packed and compressed by buffer/chunk.py. docs/buffer.md gives the measurements behind that choice.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from pathlib import Path

from kernel.errors import StorageError

SCHEMA_VERSION = 4  # 2: outbox_series, 3: identity (the epoch), 4: traffic_day
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
-- revision numbers of windows revised after their first emission (buffer/window_replay.py)
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
-- who this database is: the epoch, 16 random bytes drawn when the database was created (or upgraded
-- to version 3), carried in every batch so that (gateway id, epoch, seq) never repeats
CREATE TABLE IF NOT EXISTS identity (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
-- the uplink's traffic per UTC day (days since 1970-01-01), so that a restart does not reset what
-- `gateway status` says a day cost on the data plan (buffer/traffic_days.py, docs/lte.md)
CREATE TABLE IF NOT EXISTS traffic_day (
    day INTEGER PRIMARY KEY,
    app_sent INTEGER NOT NULL,
    app_received INTEGER NOT NULL,
    tcp_sent INTEGER NOT NULL,
    tcp_received INTEGER NOT NULL,
    segments_out INTEGER NOT NULL,
    segments_in INTEGER NOT NULL,
    readings INTEGER NOT NULL
);
"""
_TABLES = frozenset(
    (
        "series",
        "chunk",
        "gap",
        "event",
        "outbox",
        "outbox_series",
        "window_rev",
        "meta",
        "identity",
        "traffic_day",
    )
)

#: meta keys
LAST_SEQ = "last_seq"  # highest seq ever sealed (outbox rows are deleted on delivery)
BATCHED_BELOW = "batched_below"  # every chunk with a smaller id is fully batched
WINDOW_WATERMARK = "window_watermark"  # windowing clock of the last sealed batch (absent: never)
#: when the last batch was sealed (wall clock ms; absent: never): the heartbeat's silence goes on
#: across restarts, so an idle agent in a crash loop still sends one per uplink.heartbeat_s
LAST_SEALED_MS = "last_sealed_ms"
#: identity key of the database's epoch (docs/wire-format.md, section 3, "Batch identity")
EPOCH = "epoch"
EPOCH_LENGTH = 16
#: buffer.db, its WAL and SHM: readable by the agent's group (metrics, technicians), by no one else
FILE_MODE = 0o640
_SIDE_SUFFIXES = ("-wal", "-shm")


#: Python's own errors on garbage SQLite hands back: error text or a TEXT value that is not UTF-8
#: (3 of 10 random single-byte corruptions in issue 13 hit it), a value of the wrong type or size
GARBAGE_ERRORS = (UnicodeDecodeError, ValueError, TypeError, OverflowError)


class CorruptContent(sqlite3.DatabaseError):
    """The pages are intact but what they hold cannot be the store's (a missing epoch, a bad counter)."""


def restrict_mode(path: Path) -> None:
    """Create `path` 0640 if missing and bring it and its WAL/SHM back to 0640, whatever the umask.

    SQLite creates the WAL and SHM with the database file's mode, so a database created 0640
    keeps its side files 0640 too; the chmod of existing files repairs those made before.
    """
    # exists already, or a read-only folder: sqlite3 then opens it (or says why it cannot)
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        os.chmod(path, FILE_MODE)  # the umask may have taken bits away: put them back
    for file in (path, *(Path(f"{path}{suffix}") for suffix in _SIDE_SUFFIXES)):
        # not the owner or a read-only filesystem: leave the mode, opening still works
        with contextlib.suppress(OSError):
            if file.stat().st_mode & 0o777 != FILE_MODE:
                file.chmod(FILE_MODE)


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open one connection of the store: WAL, explicit transactions, usable from any one thread at a time."""
    restrict_mode(path)
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
    # an upgraded database draws its epoch here too: its seqs go on, under a new identity
    conn.execute(
        "INSERT OR IGNORE INTO identity(key, value) VALUES (?, ?)", (EPOCH, os.urandom(EPOCH_LENGTH))
    )
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    conn.execute("COMMIT")


def epoch(conn: sqlite3.Connection) -> bytes:
    """The database's epoch; CorruptContent when it is missing or not 16 bytes."""
    row = conn.execute("SELECT value FROM identity WHERE key = ?", (EPOCH,)).fetchone()
    if row is None or not isinstance(row[0], bytes) or len(row[0]) != EPOCH_LENGTH:
        raise CorruptContent("the database has no valid epoch")
    return row[0]


def validate(conn: sqlite3.Connection) -> None:
    """Read what the store reads later, so that garbage behind intact pages fails now, at open.

    quick_check proves the b-trees sound, not their content: a flipped byte inside a row can leave
    a TEXT that is not UTF-8 (sqlite3 then raises UnicodeDecodeError on every later read), a counter
    of the wrong type, or a batched_below past the newest chunk (new readings would never be batched).
    """
    _check_columns(conn)
    epoch(conn)
    values = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if any(not isinstance(v, int) or v < 0 for v in values.values()):
        raise CorruptContent("meta holds a value that is not a counter")
    newest_chunk, newest_seq = conn.execute(
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM chunk), (SELECT COALESCE(MAX(seq), 0) FROM outbox)"
    ).fetchone()
    if values.get(BATCHED_BELOW, 0) > newest_chunk + 1 or values.get(LAST_SEQ, 0) < newest_seq:
        raise CorruptContent("meta counters disagree with the chunk and outbox tables")
    for table, columns in _TEXT_COLUMNS.items():
        for row in conn.execute(f"SELECT {columns} FROM {table}"):
            if not all(isinstance(v, str) for v in row):
                raise CorruptContent(f"{table} holds a name that is not text")


def _check_columns(conn: sqlite3.Connection) -> None:
    """Every table has the columns of _DDL: a flipped byte in sqlite_master renames one silently."""
    if _columns(conn) != _expected_columns():
        raise CorruptContent("the tables do not have the columns of the schema")


@functools.cache
def _expected_columns() -> dict[str, list[tuple[str, str, int, int]]]:
    reference = sqlite3.connect(":memory:")
    try:
        reference.executescript(_DDL)
        return _columns(reference)
    finally:
        reference.close()


def _columns(conn: sqlite3.Connection) -> dict[str, list[tuple[str, str, int, int]]]:
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        table: [(c[1], c[2], c[3], c[5]) for c in conn.execute(f"PRAGMA table_info({table!r})")]
        for table in tables
        if table in _TABLES
    }


#: every TEXT column the store hands out (sqlite3 decodes them on read)
_TEXT_COLUMNS = {
    "series": "sensor, quantity, unit",
    "gap": "reason",
    "event": "source, kind, detail",
    "window_rev": "sensor, quantity, unit",
}


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
