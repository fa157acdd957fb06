"""Opening the database file: a corrupt or unreadable one is moved aside and a fresh one started."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from buffer import schema
from gateway.errors import StorageError
from gateway.model import HealthEvent

#: primary SQLite result codes that mean "this file cannot be trusted": IOERR, CORRUPT, NOTADB
_UNREADABLE = {10, 11, 26}
_SIDE_FILES = ("-wal", "-shm", "-journal")
SQLITE_IOERR = 10
OPEN_ATTEMPTS = 3


def open_checked(path: Path) -> tuple[sqlite3.Connection, HealthEvent | None]:
    """Open `path` after PRAGMA quick_check; quarantine it and start fresh when it is corrupt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    reason = ""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return _open_verified(path), None
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise StorageError(f"cannot open buffer {path}: {exc}") from exc
            reason = str(exc)
            if not _is_io_error(exc) or attempt == OPEN_ATTEMPTS - 1:
                break
            time.sleep(0.1)  # a read error may be transient: look again before giving up
    moved = quarantine(path)
    try:
        conn = schema.connect(path)
        schema.create(conn)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot create a fresh buffer {path}: {exc}") from exc
    detail = f"corrupt database moved to {moved}: {reason}"
    return conn, HealthEvent(int(time.time() * 1000), "buffer", "buffer.quarantined", detail)


def _open_verified(path: Path) -> sqlite3.Connection:
    conn = schema.connect(path)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            problems = "; ".join(str(row[0]) for row in rows[:3])
            raise _Corrupt(f"quick_check: {problems}")
        schema.create(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class _Corrupt(sqlite3.DatabaseError):
    """quick_check answered with something else than ok."""


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    if isinstance(exc, _Corrupt):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "malformed" in str(exc) or "not a database" in str(exc)
    return (code & 0xFF) in _UNREADABLE


def _is_io_error(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (int(code) & 0xFF) == SQLITE_IOERR


def quarantine(path: Path) -> Path:
    """Move the database and its WAL to <dir>/quarantine/<utc time>.db; return the new path."""
    folder = path.parent / "quarantine"
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = folder / f"{stamp}.db"
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, target)
    for suffix in _SIDE_FILES:
        side = Path(f"{path}{suffix}")
        if suffix == "-shm":
            with contextlib.suppress(FileNotFoundError):
                side.unlink()
            continue
        with contextlib.suppress(FileNotFoundError):
            os.replace(side, Path(f"{target}{suffix}"))
    return target
