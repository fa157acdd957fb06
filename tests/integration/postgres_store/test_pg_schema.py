"""The PostgreSQL store's schema: day partitions made on demand, migrations once and concurrently safe."""

from __future__ import annotations

import threading

import numpy as np
import psycopg
import pytest

from gateway import wire
from gateway.receiver.postgres import PostgresStore
from gateway.receiver.postgres.schema import SCHEMA_VERSION
from gateway.receiver.store import Outcome, RegisteredKey, VerifiedBatch
from hil.fleet import SimulatedGateway
from kernel.errors import KidHintTaken, StorageError
from postgres_store.pg_batches import signed, verified

MIDNIGHT = 1_767_312_000_000  # 2026-01-02T00:00:00Z


def rows(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def partitions(dsn: str) -> list[tuple[object, ...]]:
    return rows(
        dsn,
        "SELECT c.relname, count(r.*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " LEFT JOIN reading_rows r ON r.tableoid = c.oid"
        " WHERE i.inhparent = 'reading_rows'::regclass GROUP BY 1 ORDER BY 1",
    )


def across_midnight(gateway: SimulatedGateway, seq: int) -> VerifiedBatch:
    ts = np.array([MIDNIGHT - 1_000, MIDNIGHT, MIDNIGHT + 1_000, 5_000], dtype=np.int64)  # 5_000: 1970
    readings = wire.ReadingColumns(
        np.zeros(4, np.int32), ts, np.arange(4.0), np.array([0, 0, 0, 2], np.uint16)
    )
    return verified(gateway, signed(gateway, seq, readings=readings))


def test_readings_across_midnight_land_in_the_partition_of_their_day(fresh_dsn: str) -> None:
    gateway = SimulatedGateway("gw-p")
    store = PostgresStore(fresh_dsn)
    assert store.commit([across_midnight(gateway, 1)]) == [Outcome.STORED]
    assert partitions(fresh_dsn) == [
        ("reading_rows_before_2000", 1), ("reading_rows_d20260101", 1), ("reading_rows_d20260102", 2),
        ("reading_rows_from_2100", 0),
    ]  # fmt: skip
    # another receiver, started later, finds the partitions and adds rows to them
    other = PostgresStore(fresh_dsn)
    assert other.commit([across_midnight(gateway, 2)]) == [Outcome.STORED]
    assert [count for _, count in partitions(fresh_dsn)] == [2, 2, 4, 0]
    assert rows(fresh_dsn, "SELECT count(*) FROM readings WHERE ts_ms >= 1767312000000") == [(4,)]
    store.close()
    other.close()


def test_a_day_dropped_for_retention_is_made_again_when_late_readings_of_it_arrive(fresh_dsn: str) -> None:
    gateway = SimulatedGateway("gw-late")
    store = PostgresStore(fresh_dsn)
    store.commit([across_midnight(gateway, 1)])
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("DROP TABLE reading_rows_d20260102")  # the operator's retention job
    # the store still believes the day has a partition
    assert store.commit([across_midnight(gateway, 2)]) == [Outcome.STORED]
    assert [name for name, _ in partitions(fresh_dsn)] == [
        "reading_rows_before_2000", "reading_rows_d20260101", "reading_rows_d20260102", "reading_rows_from_2100",
    ]  # fmt: skip
    assert rows(
        fresh_dsn, "SELECT seq, count(*) FROM readings WHERE ts_ms >= 1767312000000 GROUP BY seq"
    ) == [(2, 2)]
    store.close()


def test_receivers_starting_together_migrate_once(fresh_dsn: str) -> None:
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            PostgresStore(fresh_dsn).close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    PostgresStore(fresh_dsn).close()  # and again later: nothing to do
    assert rows(fresh_dsn, "SELECT version FROM schema_version") == [
        (v,) for v in range(1, SCHEMA_VERSION + 1)
    ]


def test_a_database_migrated_by_a_newer_receiver_is_refused(fresh_dsn: str) -> None:
    PostgresStore(fresh_dsn).close()
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute(
            "INSERT INTO schema_version (version, description) VALUES (%s, 'from the future')",
            (SCHEMA_VERSION + 1,),
        )
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade the receiver"):
        PostgresStore(fresh_dsn)


def test_a_version_2_database_gets_key_hints_except_for_keys_that_already_shared_one(fresh_dsn: str) -> None:
    """Before migration 3 nothing refused two keys with the same first 4 bytes: both are kept (found by
    their whole kid, as tagged envelopes name them), neither by the hint; every other key is."""
    PostgresStore(fresh_dsn).close()
    with psycopg.connect(fresh_dsn) as conn:  # back to version 2, with the keys a version-2 receiver took
        conn.execute("DROP INDEX keys_by_hint; ALTER TABLE keys DROP COLUMN hint;")
        conn.execute("DELETE FROM schema_version WHERE version = 3")
        for kid, gateway_id in ((b"same1111", "gw-1"), (b"same2222", "gw-2"), (b"solo1111", "gw-3")):
            conn.execute("INSERT INTO keys VALUES (%s, %s, %s, 1, 'cli', NULL)", (kid, gateway_id, bytes(32)))
    store = PostgresStore(fresh_dsn)
    try:
        assert store.key(b"solo") is not None and store.key(b"solo").gateway_id == "gw-3"  # type: ignore[union-attr]
        assert store.key(b"same") is None
        assert store.key(b"same1111") is not None and store.key(b"same2222") is not None
        with pytest.raises(KidHintTaken):  # and the shared hint stays taken
            store.add_key(RegisteredKey(b"same3333", "gw-4", bytes(32), 2, "cli"))
    finally:
        store.close()
    assert rows(fresh_dsn, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]
