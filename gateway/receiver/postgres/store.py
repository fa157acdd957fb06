"""The receiver's PostgreSQL store (`ReceiverStore`, gateway/receiver/store.py): group commits of many
verified batches per transaction, readings by binary COPY into day partitions, several receivers on one
database."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

import numpy as np
import psycopg
from psycopg import Connection, errors
from psycopg.rows import TupleRow

from gateway.receiver.postgres import key_registry
from gateway.receiver.postgres.contents import (
    INCOMING_WINDOWS,
    Identity,
    SeriesName,
    claim,
    claimed,
    identity_of,
    series_names,
    stored_digests,
    write_contents,
)
from gateway.receiver.postgres.schema import (
    create_partitions,
    existing_partition_days,
    migrate,
    partition_days,
)
from gateway.receiver.store import (
    Outcome,
    QuarantinedBatch,
    QuarantineEntry,
    ReceiverStore,
    RegisteredKey,
    VerifiedBatch,
)
from kernel.errors import StorageError

#: a group commit that deadlocked or hit a serialization failure is tried again this many times in all
#: (claims are made in identity order, so this is a safety net, not the normal path)
ATTEMPTS = 3

P = ParamSpec("P")
T = TypeVar("T")


class PostgresStore:
    """One connection (autocommit, with explicit transactions); reconnects after the server went away.

    Several receiver processes may share the database: a batch identity is claimed with its readings in
    one transaction, so each batch is stored once whichever receiver gets it first.
    """

    def __init__(self, dsn: str, *, connect_timeout_s: int = 10) -> None:
        self._dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        #: series ids and partitioned days known to be committed (they are never deleted by the store)
        self._series: dict[SeriesName, int] = {}
        self._days: set[int] = set()
        self._conn: Connection[TupleRow] | None = None
        self._connection()

    def _connection(self) -> Connection[TupleRow]:
        if self._conn is not None and not self._conn.broken and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=self._connect_timeout_s,
                application_name="gateway-receiver",
            )  # fmt: skip
        except psycopg.Error as exc:
            raise StorageError(f"receiver database: {_message(exc)}") from None
        try:
            self._days = _set_up(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"receiver database: {_message(exc)}") from None
            raise
        self._conn = conn
        return conn

    def commit(
        self,
        batches: Sequence[VerifiedBatch],
        quarantine: Sequence[QuarantineEntry] = (),
        release: Sequence[int] = (),
    ) -> list[Outcome]:
        """Store batches and quarantine entries and delete the released quarantine rows in one durable
        transaction (ReceiverStore.commit)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._commit_once(batches, quarantine, release)
            except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
                if attempt == ATTEMPTS:
                    raise StorageError(f"receiver database: {_message(exc)}") from None
            except errors.CheckViolation as exc:
                # "no partition found for row": a day partition this receiver knew of was dropped
                # (retention) since; learn the partitions again, the next attempt recreates it
                if attempt == ATTEMPTS:
                    raise StorageError(f"receiver database: {_message(exc)}") from None
                self._days = self._run(existing_partition_days)
            except psycopg.Error as exc:
                raise StorageError(f"receiver database: {_message(exc)}") from None
        raise AssertionError("unreachable")

    def _commit_once(
        self, batches: Sequence[VerifiedBatch], quarantine: Sequence[QuarantineEntry], release: Sequence[int]
    ) -> list[Outcome]:
        conn = self._connection()
        first: dict[Identity, VerifiedBatch] = {}
        for item in batches:
            first.setdefault(identity_of(item.batch), item)
        self._prepare(conn, first.values())
        with conn.transaction():
            ids = claim(conn, list(first.values())) if first else {}
            digests = stored_digests(conn, [i for i in first if i not in ids])
            write_contents(
                conn, [claimed(first[i].batch, batch_id, self._series) for i, batch_id in ids.items()]
            )
            key_registry.keep_catalogues(conn, batches)
            key_registry.quarantine(conn, quarantine)
            key_registry.release(conn, release)
        digests.update((i, first[i].batch.digest) for i in ids)
        outcomes = []
        for item in batches:
            identity = identity_of(item.batch)
            if first[identity] is item and identity in ids:
                outcomes.append(Outcome.STORED)
            elif digests[identity] == item.batch.digest:
                outcomes.append(Outcome.DUPLICATE)
            else:
                outcomes.append(Outcome.REPLAY)
        return outcomes

    def _prepare(self, conn: Connection[TupleRow], items: Iterable[VerifiedBatch]) -> None:
        """Series ids and day partitions the commit will need, each in a short transaction of its own
        (committed even if the group commit then fails: they are harmless and reused)."""
        items = list(items)
        names = {name for item in items for name in series_names(item.batch)}
        missing = sorted(names - self._series.keys())
        if missing:
            self._series.update(_register_series(conn, missing))
        if items:
            days = partition_days(np.concatenate([item.batch.readings.ts_ms for item in items]))
            if days - self._days:
                create_partitions(conn, days - self._days)
                self._days |= days

    def quarantined(
        self, *, gateway_id: str | None = None, retryable_only: bool = False, limit: int = 1000
    ) -> list[QuarantinedBatch]:
        """Quarantine rows, oldest first."""
        return self._run(key_registry.quarantined, gateway_id, retryable_only, limit)

    def catalogue(self, gateway_id: str, catalogue: bytes) -> bytes | None:
        """The series table `gateway_id` declared as `catalogue`, or None."""
        return self._run(key_registry.catalogue, gateway_id, catalogue)

    def add_key(self, key: RegisteredKey) -> bool:
        """Register a key (False when already registered for this gateway)."""
        return self._run(key_registry.add_key, key)

    def keys(self, gateway_id: str | None = None) -> list[RegisteredKey]:
        """Registered keys, by gateway then added time."""
        return self._run(key_registry.keys, gateway_id)

    def key(self, kid: bytes) -> RegisteredKey | None:
        """The key registered under `kid`, or None."""
        return self._run(key_registry.key, kid)

    def revoke_key(self, kid: bytes, revoked_ms: int) -> None:
        """Mark a key revoked (an earlier revocation time is kept)."""
        self._run(key_registry.revoke_key, kid, revoked_ms)

    def count_readings(self, gateway_id: str | None = None) -> int:
        """How many readings are stored."""
        return self._run(_count_readings, gateway_id)

    def _run(
        self, query: Callable[Concatenate[Connection[TupleRow], P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            return query(self._connection(), *args, **kwargs)
        except psycopg.Error as exc:
            raise StorageError(f"receiver database: {_message(exc)}") from None

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()


def _set_up(conn: Connection[TupleRow]) -> set[int]:
    """Make a new connection ready: durable commits, the schema migrated, the windows' staging table;
    returns the days that have a partition."""
    # the contract: `commit` returns only once the transaction is durable
    if conn.execute("SHOW synchronous_commit").fetchone() == ("off",):
        conn.execute("SET synchronous_commit TO on")
    migrate(conn)
    conn.execute(INCOMING_WINDOWS)
    return existing_partition_days(conn)


def _register_series(conn: Connection[TupleRow], names: list[SeriesName]) -> dict[SeriesName, int]:
    """Insert series not known yet (in name order: concurrent receivers cannot deadlock) and return
    the ids of all of `names`."""
    columns = [list(c) for c in zip(*names, strict=True)]
    with conn.transaction():
        conn.execute(
            "INSERT INTO series (gateway_id, sensor, quantity, unit)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS n ORDER BY 1, 2, 3, 4"
            " ON CONFLICT DO NOTHING",
            columns,
        )
        rows = conn.execute(
            "SELECT series_id, gateway_id, sensor, quantity, unit FROM series JOIN"
            " unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS n(gateway_id, sensor, quantity, unit)"
            " USING (gateway_id, sensor, quantity, unit)",
            columns,
        ).fetchall()
    return {(g, s, q, u): series_id for series_id, g, s, q, u in rows}


def _count_readings(conn: Connection[TupleRow], gateway_id: str | None) -> int:
    if gateway_id is None:
        row = conn.execute("SELECT count(*) FROM reading_rows").fetchone()
    else:
        row = conn.execute(
            "SELECT count(*) FROM reading_rows WHERE series_id IN"
            " (SELECT series_id FROM series WHERE gateway_id = %s)",
            (gateway_id,),
        ).fetchone()
    return int(row[0]) if row else 0


def _message(exc: psycopg.Error) -> str:
    """One line: psycopg's messages carry the server's detail on further lines."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


if TYPE_CHECKING:

    def _is_a_receiver_store(store: PostgresStore) -> ReceiverStore:
        return store  # mypy checks PostgresStore against the protocol here
