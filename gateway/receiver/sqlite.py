"""The receiver's SQLite store (the embedded default): batches, readings, windows, gaps, events,
quarantine and the key registry in one file (`ReceiverStore`, gateway/receiver/store.py)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np

from gateway.receiver.sqlite_schema import migrate
from gateway.receiver.store import (
    Outcome,
    QuarantinedBatch,
    QuarantineEntry,
    RegisteredKey,
    VerifiedBatch,
    kid_column,
)
from gateway.wire import Batch, hint_taken, kid_hint
from kernel.errors import ConfigError, StorageError, UnknownKey

#: rejected (non-retryable) quarantine rows kept, the oldest deleted beyond it
REJECTED_KEEP = 1000
#: bytes kept of a rejected blob: enough to see what it was, 1000 of them stay under 64 MB
REJECTED_MAX_BYTES = 64 * 1024


class SqliteStore:
    """One connection; every `commit` is one BEGIN IMMEDIATE ... COMMIT (safe with several processes)."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # 64 MiB of page cache instead of 2: the readings index outgrows 2 MiB within minutes,
            # after which every insert reads index pages back (8,000 batches: 225 -> see the bench)
            self._db.execute("PRAGMA cache_size=-65536")
            migrate(self._db)
        except sqlite3.Error as exc:
            raise StorageError(f"receiver database {path}: {exc}") from None
        self._path = path
        #: series ids known to be committed (rows of `series` are never deleted or renumbered, so
        #: they stay valid whatever other processes write); filled after each COMMIT only
        self._series: dict[SeriesKey, int] = {}

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"receiver database {self._path}: {exc}") from None

    def commit(
        self,
        batches: Sequence[VerifiedBatch],
        quarantine: Sequence[QuarantineEntry] = (),
        release: Sequence[int] = (),
    ) -> list[Outcome]:
        """Store batches and quarantine entries in one durable transaction (ReceiverStore.commit)."""
        with self._transaction() as db:
            contents = _Contents(db, self._series)
            outcomes = self._store_all(db, batches, contents)
            contents.flush()
            for entry in quarantine:
                self._quarantine_one(db, entry)
            db.executemany("DELETE FROM quarantine WHERE id = ?", ((i,) for i in release))
        self._series.update(contents.new_series)  # committed: the ids are now safe to reuse
        return outcomes

    def _store_all(
        self, db: sqlite3.Connection, batches: Sequence[VerifiedBatch], contents: _Contents
    ) -> list[Outcome]:
        """Judge every batch by its identity, then insert the new ones with one statement per table.

        Why not batch by batch: three statements per batch (look up, insert, number it) and two
        for empty gaps and events cost 0.4-0.5 µs a reading of 100-reading batches (in-process
        judge + commit of 2,000 batches: 4.9-5.0 -> 4.5 µs a reading)."""
        declaring = [item for item in batches if item.batch.catalogue_table]
        if declaring:
            db.executemany(
                "INSERT OR IGNORE INTO catalogues VALUES (?, ?, ?, ?)",
                [
                    (i.batch.gateway_id, i.batch.catalogue, i.batch.catalogue_table, i.received_ms)
                    for i in declaring
                ],
            )
        stored = _stored_digests(db, {_identity(item.batch) for item in batches})
        outcomes, new = [], []
        for item in batches:
            identity = _identity(item.batch)
            digest = stored.get(identity)
            if digest is not None:
                outcomes.append(Outcome.DUPLICATE if digest == item.batch.digest else Outcome.REPLAY)
                continue
            stored[identity] = item.batch.digest  # a later copy in this call is judged against it
            outcomes.append(Outcome.STORED)
            new.append(item)
        if not new:
            return outcomes
        db.executemany(
            "INSERT INTO batches (gateway_id, seq, kid, digest, created_ms, received_ms, readings, epoch,"
            " signed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (b.gateway_id, b.seq, b.kid, b.digest, b.created_ms, item.received_ms, len(b.readings), b.epoch,
                 item.blob)
                for item in new
                for b in (item.batch,)
            ],
        )  # fmt: skip
        # numbered as INTEGER PRIMARY KEY would (max + 1, ...): BEGIN IMMEDIATE holds the write lock
        first = int(db.execute("SELECT coalesce(max(batch_id), 0) + 1 FROM batch_refs").fetchone()[0])
        db.executemany(
            "INSERT INTO batch_refs (batch_id, gateway_id, epoch, seq) VALUES (?, ?, ?, ?)",
            [(first + i, *_identity(item.batch)) for i, item in enumerate(new)],
        )
        for i, item in enumerate(new):
            contents.add(item.batch, first + i)
        return outcomes

    def _quarantine_one(self, db: sqlite3.Connection, entry: QuarantineEntry) -> None:
        retryable = entry.reason.retryable
        kept = entry.blob if retryable else entry.blob[:REJECTED_MAX_BYTES]
        db.execute(
            "INSERT OR IGNORE INTO quarantine (received_ms, reason, retryable, detail, gateway_id, kid,"
            " digest, size, blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.received_ms, entry.reason.value, int(retryable), entry.detail, entry.gateway_id,
                entry.kid, entry.digest, len(entry.blob), kept,
            ),
        )  # fmt: skip
        if not retryable:
            db.execute(
                "DELETE FROM quarantine WHERE NOT retryable AND id NOT IN"
                " (SELECT id FROM quarantine WHERE NOT retryable ORDER BY id DESC LIMIT ?)",
                (REJECTED_KEEP,),
            )

    def quarantined(
        self, *, gateway_id: str | None = None, retryable_only: bool = False, limit: int = 1000
    ) -> list[QuarantinedBatch]:
        """Quarantine rows, oldest first."""
        query = (
            f"SELECT {QuarantinedBatch.COLUMNS} FROM quarantine"
            " WHERE (? IS NULL OR gateway_id = ?) AND (retryable OR NOT ?) ORDER BY id LIMIT ?"
        )
        rows = self._read(query, (gateway_id, gateway_id, int(retryable_only), limit))
        return [QuarantinedBatch.from_row(r) for r in rows]

    def catalogue(self, gateway_id: str, catalogue: bytes) -> bytes | None:
        """The series table `gateway_id` declared as `catalogue`, or None."""
        query = "SELECT series_table FROM catalogues WHERE gateway_id = ? AND catalogue = ?"
        rows = self._read(query, (gateway_id, catalogue))
        return bytes(rows[0][0]) if rows else None

    def add_key(self, key: RegisteredKey) -> bool:
        """Register a key (False when already registered for this gateway; ConfigError when it is
        another's, KidHintTaken when another key has its hint)."""
        with self._transaction() as db:
            row = db.execute("SELECT gateway_id FROM keys WHERE kid = ?", (key.kid,)).fetchone()
            if row is not None:
                if row[0] != key.gateway_id:
                    raise ConfigError(
                        f"key {key.kid.hex()} is already registered for gateway {row[0]!r},"
                        f" refusing to register it for {key.gateway_id!r}"
                    )
                return False
            hint = kid_hint(key.kid)
            # by the kid's bytes, not the hint column: a hint left NULL by the upgrade is taken too
            holder = db.execute(
                "SELECT kid, gateway_id FROM keys WHERE substr(kid, 1, 4) = ?", (hint,)
            ).fetchone()
            if holder is not None:
                raise hint_taken(key.gateway_id, key.kid, holder[1], bytes(holder[0]))
            db.execute(
                "INSERT INTO keys (kid, gateway_id, public_key, added_ms, source, revoked_ms, hint)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key.kid, key.gateway_id, key.public_key, key.added_ms, key.source, key.revoked_ms, hint),
            )
        return True

    def keys(self, gateway_id: str | None = None) -> list[RegisteredKey]:
        """Registered keys, by gateway then added time."""
        query = (
            "SELECT kid, gateway_id, public_key, added_ms, source, revoked_ms FROM keys"
            " WHERE ? IS NULL OR gateway_id = ? ORDER BY gateway_id, added_ms, kid"
        )
        return [_key(r) for r in self._read(query, (gateway_id, gateway_id))]

    def key(self, kid: bytes) -> RegisteredKey | None:
        """The key registered under `kid` (8 bytes, or its 4-byte hint), or None."""
        query = (
            "SELECT kid, gateway_id, public_key, added_ms, source, revoked_ms FROM keys"
            f" WHERE {kid_column(kid)} = ?"
        )
        rows = self._read(query, (kid,))
        return _key(rows[0]) if rows else None

    def revoke_key(self, kid: bytes, revoked_ms: int) -> None:
        """Mark a key revoked, by kid or hint (an earlier revocation time is kept)."""
        with self._transaction() as db:
            changed = db.execute(
                f"UPDATE keys SET revoked_ms = coalesce(revoked_ms, ?) WHERE {kid_column(kid)} = ?",
                (revoked_ms, kid),
            ).rowcount
        if not changed:
            raise UnknownKey(f"no registered key with kid {kid.hex()}")

    def count_readings(self, gateway_id: str | None = None) -> int:
        """How many readings are stored."""
        query = "SELECT count(*) FROM readings WHERE ? IS NULL OR gateway_id = ?"
        return int(self._read(query, (gateway_id, gateway_id))[0][0])

    def _read(self, query: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"receiver database {self._path}: {exc}") from None

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


Identity = tuple[str, bytes, int]
#: identities looked up per SELECT (3 parameters each, under SQLite's default limit of 32,766)
_LOOKUP_CHUNK = 500


def _identity(batch: Batch) -> Identity:
    return batch.gateway_id, batch.epoch, batch.seq


def _stored_digests(db: sqlite3.Connection, identities: set[Identity]) -> dict[Identity, bytes]:
    """The digest stored under each of these identities that is stored."""
    found: dict[Identity, bytes] = {}
    ordered = sorted(identities)
    for at in range(0, len(ordered), _LOOKUP_CHUNK):
        chunk = ordered[at : at + _LOOKUP_CHUNK]
        rows = db.execute(lookup_query(len(chunk)), [v for identity in chunk for v in identity])
        found.update(((g, bytes(e), s), bytes(d)) for g, e, s, d in rows)
    return found


def lookup_query(identities: int) -> str:
    """The digests stored under `identities` (gateway_id, epoch, seq) parameter triples: a join
    that searches the primary key once per identity (`(...) IN (VALUES ...)` scans the table)."""
    values = ", ".join(["(?, ?, ?)"] * identities)
    return (
        f"SELECT b.gateway_id, b.epoch, b.seq, b.digest FROM (VALUES {values}) AS v JOIN batches AS b"
        " ON b.gateway_id = v.column1 AND b.epoch = v.column2 AND b.seq = v.column3"
    )


def _key(row: tuple[object, ...]) -> RegisteredKey:
    kid, gateway_id, public_key, added_ms, source, revoked_ms = row
    assert isinstance(kid, bytes) and isinstance(public_key, bytes)
    assert isinstance(gateway_id, str) and isinstance(added_ms, int) and isinstance(source, str)
    assert revoked_ms is None or isinstance(revoked_ms, int)
    return RegisteredKey(kid, gateway_id, public_key, added_ms, source, revoked_ms)


SeriesKey = tuple[str, str, str, str]


class _Contents:
    """The reading rows of one transaction's batches, gathered and written by ONE executemany at the
    end (`flush`); windows, gaps and events go in as each batch comes. Series ids come from the
    committed cache, else from the `series` table (inserted when new)."""

    def __init__(self, db: sqlite3.Connection, committed: dict[SeriesKey, int]) -> None:
        self._db = db
        self._committed = committed
        self.new_series: dict[SeriesKey, int] = {}
        self._columns: list[list[np.ndarray]] = [[], [], [], [], []]

    def add(self, batch: Batch, batch_id: int) -> None:
        names = [(s.sensor, s.quantity, s.unit) for s in batch.series]
        r = batch.readings
        if len(r):
            ids = np.array([self._series_id((batch.gateway_id, *n)) for n in names], dtype=np.int64)
            parts: list[np.ndarray] = [
                ids[r.series], r.ts_ms, r.value, r.quality, np.full(len(r), batch_id, np.int64)
            ]  # fmt: skip
            for column, values in zip(self._columns, parts, strict=True):
                column.append(values)
        _insert_details(self._db, batch, names)

    def flush(self) -> None:
        """Every reading of the transaction, ROWS_PER_INSERT rows per INSERT statement, parameters
        flattened in C: no Python bytecode runs per reading."""
        if not self._columns[0]:
            return
        series, ts, value, quality, batch = (np.concatenate(c) for c in self._columns)
        rows = zip(
            series.tolist(), ts.tolist(), _nullable(value), quality.tolist(), batch.tolist(), strict=True
        )
        flat = list(chain.from_iterable(rows))
        step = 5 * ROWS_PER_INSERT
        whole = len(flat) - len(flat) % step
        self._db.executemany(
            _insert_rows(ROWS_PER_INSERT), (flat[i : i + step] for i in range(0, whole, step))
        )
        if whole < len(flat):
            self._db.execute(_insert_rows((len(flat) - whole) // 5), flat[whole:])

    def _series_id(self, key: SeriesKey) -> int:
        known = self._committed.get(key)
        if known is None:
            known = self.new_series.get(key)
        if known is None:
            self._db.execute(
                "INSERT OR IGNORE INTO series (gateway_id, sensor, quantity, unit) VALUES (?, ?, ?, ?)", key
            )
            row = self._db.execute(
                "SELECT series_id FROM series WHERE gateway_id = ? AND sensor = ? AND quantity = ?"
                " AND unit = ?",
                key,
            ).fetchone()
            known = self.new_series[key] = int(row[0])
        return known


#: reading rows per INSERT statement: one statement per row stepped 6,400 times per group cost 2.3 µs
#: a row, 50 rows per statement 1.3-1.4 (the same rows into the same indexed table, CPU; SQLite's
#: limit on VALUES rows is 500)
ROWS_PER_INSERT = 50


@functools.cache
def _insert_rows(rows: int) -> str:
    return "INSERT INTO reading_rows VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * rows)


def _insert_details(db: sqlite3.Connection, batch: Batch, names: list[tuple[str, str, str]]) -> None:
    """Windows, gaps and events of one batch."""
    gid, seq, epoch = batch.gateway_id, batch.seq, batch.epoch
    if len(batch.windows):
        _insert_windows(db, batch, names)
    if not (batch.gaps or batch.events):  # most batches: two statements saved
        return
    db.executemany(
        "INSERT INTO gaps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ((gid, *names[g.series], g.from_ms, g.to_ms, g.count, g.reason, seq, epoch) for g in batch.gaps),
    )
    db.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
        ((gid, e.ts_ms, e.source, e.kind, e.detail, seq, epoch) for e in batch.events),
    )


def _insert_windows(db: sqlite3.Connection, batch: Batch, names: list[tuple[str, str, str]]) -> None:
    """Upsert windows: a higher revision supersedes the stored one, a lower or equal one is ignored."""
    w = batch.windows
    ints = (w.window_start, w.window_ms, w.rev, w.count, w.nan_count)
    floats = (w.min, w.max, w.mean, w.std, w.first, w.last)
    table = np.array(names, dtype=object).reshape(len(names), 3)[w.series]
    columns = [table[:, 0].tolist(), table[:, 1].tolist(), table[:, 2].tolist()]
    columns += [c.tolist() for c in ints] + [_nullable(c) for c in floats]
    columns += [w.first_ts.tolist(), w.last_ts.tolist()]
    db.executemany(
        """INSERT INTO windows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (gateway_id, sensor, quantity, window_start, window_ms) DO UPDATE SET
           rev = excluded.rev, count = excluded.count, nan_count = excluded.nan_count,
           min = excluded.min, max = excluded.max, mean = excluded.mean, std = excluded.std,
           first = excluded.first, last = excluded.last, first_ts = excluded.first_ts,
           last_ts = excluded.last_ts, seq = excluded.seq, epoch = excluded.epoch
           WHERE excluded.rev > windows.rev""",
        zip(repeat(batch.gateway_id), *columns, repeat(batch.seq), repeat(batch.epoch)),
    )


def _nullable(values: np.ndarray) -> list[float | None]:
    """SQLite has no NaN: a missing statistic or reading becomes NULL (vectorised)."""
    nan = np.isnan(values)
    if not nan.any():
        return values.tolist()  # type: ignore[no-any-return]
    boxed = values.astype(object)
    boxed[nan] = None
    return boxed.tolist()  # type: ignore[no-any-return]
