"""Opening the database file: a corrupt or unreadable one is moved aside and a fresh one started.

A full disk is not corruption: a healthy buffer that cannot be opened because the filesystem is
full is never moved aside. The store gives back its ballast and, if that is not enough, waits for
space (logging it) instead of failing, so a full disk never becomes a restart loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog

from buffer import schema
from buffer.quota import Ballast
from kernel.backoff import Backoff
from kernel.errors import StorageError
from kernel.model import HealthEvent
from kernel.retry import RetrySeries
from kernel.wallclock import now_ms

log = structlog.get_logger(__name__)

SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_NOTADB = 26
#: IOERR variants that mean "the file could not be read" (not: could not be written, locked...)
_READ_ERRORS = {SQLITE_IOERR, 266, 522, 8458}  # IOERR, IOERR_READ, IOERR_SHORT_READ, IOERR_CORRUPTFS
_SIDE_FILES = ("-wal", "-shm", "-journal")
OPEN_ATTEMPTS = 3
#: below this much free space an I/O error at open is taken for a full disk
NO_SPACE_BYTES = 1 << 20
#: waiting for space at open: first pause, doubled up to the cap
SPACE_WAIT_INITIAL_S = 1.0
SPACE_WAIT_CAP_S = 30.0

CORRUPT, UNREADABLE, NO_SPACE, OTHER = "corrupt", "unreadable", "no space", "other"
_NOT_UTF8 = "Could not decode to UTF-8"
#: how much of an error text the quarantine event carries
MAX_REASON = 300


class _NoSpace(Exception):
    """The filesystem is full; `event` is a quarantine already done before space ran out."""

    def __init__(self, reason: str, event: HealthEvent | None = None) -> None:
        super().__init__(reason)
        self.event = event


def open_checked(path: Path) -> tuple[sqlite3.Connection, HealthEvent | None]:
    """Open `path` after PRAGMA quick_check; quarantine it and start fresh when it is corrupt.

    Returns the connection and the "buffer.quarantined" event when a file was moved aside.
    Blocks while the filesystem is too full to open the database at all.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    ballast = Ballast.beside(path)
    event: HealthEvent | None = None
    # no jitter: one buffer per gateway; `buffer.open.failed` once, `.failed_again`, `.recovered` (docs/logs.md)
    space = RetrySeries(
        log, "buffer.open", Backoff(SPACE_WAIT_INITIAL_S, SPACE_WAIT_CAP_S, jitter=0.0), path=str(path)
    )
    while True:
        try:
            conn, moved = _open_or_replace(path)
        except _NoSpace as exc:
            event = event or exc.event
            if ballast.release():
                log.warning("buffer: disk full at open, ballast given back", path=str(path), error=str(exc))
                continue
            pause(space.failed(exc, waiting_for="disk space"))
            continue
        space.succeeded()
        return conn, moved or event


def pause(seconds: float) -> None:
    """Sleep between attempts to open on a full disk (tests replace it to free space meanwhile)."""
    time.sleep(seconds)


def _open_or_replace(path: Path) -> tuple[sqlite3.Connection, HealthEvent | None]:
    reason = ""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return _open_verified(path), None
        except schema.GARBAGE_ERRORS as exc:
            reason = _describe(exc)  # error text or content that is not UTF-8: garbage in the file
            break
        except sqlite3.DatabaseError as exc:
            kind = classify(exc, path.parent)
            if kind == NO_SPACE:
                raise _NoSpace(str(exc)) from exc
            if kind == OTHER:
                raise StorageError(f"cannot open buffer {path}: {exc}") from exc
            reason = str(exc)
            if kind == CORRUPT or attempt == OPEN_ATTEMPTS - 1:
                break
            time.sleep(0.1)  # a read error may be transient: look again before giving up
    return _replace(path, reason)


def replace_corrupt(path: Path, reason: str) -> tuple[sqlite3.Connection, HealthEvent]:
    """Quarantine a database found corrupt while running (every connection to it closed) and
    start a fresh one; StorageError when that cannot be done."""
    try:
        return _replace(path, reason)
    except _NoSpace as exc:
        raise StorageError(f"cannot start a fresh buffer {path}: disk full: {exc}") from exc


def is_corruption(exc: BaseException, folder: Path) -> bool:
    """Whether an error while running means the file is corrupt (not busy, full or failing I/O)."""
    if isinstance(exc, schema.GARBAGE_ERRORS):
        return True
    return isinstance(exc, sqlite3.DatabaseError) and classify(exc, folder) == CORRUPT


def _replace(path: Path, reason: str) -> tuple[sqlite3.Connection, HealthEvent]:
    """Move the corrupt database aside and create a fresh one with a new epoch."""
    old_epoch = epoch_of(path)
    try:
        moved = quarantine(path)
    except OSError as exc:
        if not _no_space(path.parent):
            raise StorageError(f"cannot move the corrupt buffer {path} aside: {exc}") from exc
        raise _NoSpace(str(exc)) from exc
    try:
        conn = schema.connect(path)
        schema.create(conn)
        new_epoch = schema.epoch(conn)
    except sqlite3.Error as exc:
        if classify(exc, path.parent) == NO_SPACE:
            raise _NoSpace(str(exc), _quarantined(moved, reason, old_epoch, None)) from exc
        raise StorageError(f"cannot create a fresh buffer {path}: {exc}") from exc
    return conn, _quarantined(moved, reason, old_epoch, new_epoch)


def _quarantined(moved: Path, reason: str, old: bytes | None, new: bytes | None) -> HealthEvent:
    """Log the move and make the event the backend gets: which file, why, the old and the new epoch."""
    log.warning(
        "buffer: corrupt database quarantined, starting a fresh one", moved_to=str(moved), error=reason
    )
    detail = {
        "moved_to": str(moved),
        "file": moved.name,
        "reason": reason[:MAX_REASON],
        "old_epoch": None if old is None else old.hex(),
        "epoch": None if new is None else new.hex(),
    }
    return HealthEvent(now_ms(), "buffer", "buffer.quarantined", json.dumps(detail))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _open_verified(path: Path) -> sqlite3.Connection:
    conn = schema.connect(path)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            problems = "; ".join(str(row[0]) for row in rows[:3])
            raise _Corrupt(f"quick_check: {problems}")
        schema.create(conn)
        schema.validate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class _Corrupt(sqlite3.DatabaseError):
    """quick_check answered with something else than ok."""


def epoch_of(path: Path) -> bytes | None:
    """The epoch of a database that failed to open, when it can still be read (read-only); else None."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0)
        try:
            return schema.epoch(conn)
        finally:
            conn.close()
    except (sqlite3.Error, *schema.GARBAGE_ERRORS):
        return None


def classify(exc: sqlite3.Error, folder: Path) -> str:
    """What an error at open means: CORRUPT, UNREADABLE (retry, then quarantine), NO_SPACE or OTHER."""
    if isinstance(exc, _Corrupt | schema.CorruptContent):
        return CORRUPT
    if str(exc).startswith(_NOT_UTF8):
        return CORRUPT  # sqlite3's own error for a TEXT value that is not UTF-8
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        text = str(exc)
        if "malformed" in text or "not a database" in text:
            return CORRUPT
        return NO_SPACE if "full" in text else OTHER
    primary = int(code) & 0xFF
    if primary in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return CORRUPT
    if primary == SQLITE_FULL:
        return NO_SPACE
    if primary == SQLITE_IOERR:
        if _no_space(folder):
            return NO_SPACE  # e.g. IOERR_SHMSIZE: the wal-index cannot grow on a full disk
        return UNREADABLE if int(code) in _READ_ERRORS else OTHER
    return OTHER


def _no_space(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NO_SPACE_BYTES


def quarantine(path: Path) -> Path:
    """Move the database and its WAL to <dir>/quarantine/<utc time>.db; return the new path."""
    folder = path.parent / "quarantine"
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = folder / f"{stamp}.db"
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, target)
        _restrict(target)
    for suffix in _SIDE_FILES:
        side = Path(f"{path}{suffix}")
        if suffix == "-shm":
            with contextlib.suppress(FileNotFoundError):
                side.unlink()
            continue
        with contextlib.suppress(FileNotFoundError):
            os.replace(side, Path(f"{target}{suffix}"))
            _restrict(Path(f"{target}{suffix}"))
    return target


def _restrict(moved: Path) -> None:
    """A quarantined file holds readings: 0640 like the live database (files of old versions were 0644)."""
    with contextlib.suppress(OSError):
        moved.chmod(schema.FILE_MODE)
