"""Queries written against the SQLite store run unchanged on the PostgreSQL store and return the same rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import psycopg
import pytest

from gateway import wire
from gateway.receiver.postgres import PostgresStore
from gateway.receiver.sqlite import SqliteStore
from gateway.receiver.store import (
    QuarantineEntry,
    QuarantineReason,
    ReceiverStore,
    RegisteredKey,
    VerifiedBatch,
)
from hil.fleet import SimulatedGateway
from kernel.errors import GatewayError
from kernel.model import Quality
from postgres_store.pg_batches import signed, verified

T0 = 1_767_225_600_000
UNSYNCED = int(Quality.CLOCK_UNSYNCED)

QUERIES = [
    "SELECT gateway_id, sensor, quantity, unit, ts_ms, value, quality, seq FROM readings"
    " ORDER BY gateway_id, sensor, ts_ms",
    "SELECT gateway_id, sensor, count(*), min(value), max(value), sum(quality) FROM readings"
    " WHERE ts_ms BETWEEN 1767225601000 AND 1767225700000 GROUP BY gateway_id, sensor ORDER BY 1, 2",
    "SELECT gateway_id, seq, kid, digest, created_ms, received_ms, readings, epoch, signed FROM batches"
    " ORDER BY gateway_id, seq",
    "SELECT * FROM windows ORDER BY gateway_id, sensor, window_start",
    "SELECT * FROM gaps ORDER BY gateway_id, sensor, from_ms",
    "SELECT * FROM events ORDER BY gateway_id, seq, ts_ms",
    "SELECT * FROM clock_corrections ORDER BY gateway_id, to_seq",
    "SELECT * FROM readings_corrected ORDER BY gateway_id, sensor, seq, ts_ms",
    "SELECT r.gateway_id, r.seq, count(*) FROM readings r JOIN batches b"
    " ON b.gateway_id = r.gateway_id AND b.seq = r.seq GROUP BY r.gateway_id, r.seq ORDER BY 1, 2",
]


def flagged(seq: int, quality: int, values: list[float]) -> wire.ReadingColumns:
    n = len(values)
    return wire.ReadingColumns(
        series=np.arange(n, dtype=np.int32) % 2,
        ts_ms=T0 + seq * 10_000 + np.arange(n, dtype=np.int64) * 1000,
        value=np.array(values),
        quality=np.full(n, quality, dtype=np.uint16),
    )


def window(rev: int, mean: float) -> wire.WindowColumns:
    row = {
        "series": [1], "window_start": [T0], "window_ms": [60_000], "rev": [rev], "count": [60],
        "nan_count": [1], "min": [mean - 1], "max": [mean + 1], "mean": [mean], "std": [float("nan")],
        "first": [mean], "last": [mean], "first_ts": [T0], "last_ts": [T0 + 59_000],
    }  # fmt: skip
    return wire.WindowColumns(**row)  # type: ignore[arg-type]


def clock_event(ts: int, kind: str, **facts: object) -> wire.Event:
    detail = ",".join([f'"boot":"{facts.pop("boot", "b1")}"', *(f'"{k}":{v}' for k, v in facts.items())])
    return wire.Event(ts, "clock", kind, "{" + detail + "}")


def groups() -> list[list[VerifiedBatch]]:
    """Two gateways: plain batches, a clock that gets synchronised, windows revised, a gap, a NaN
    reading, a resend and a replay, over three group commits."""
    plain, clocked = SimulatedGateway("gw-plain", series=3), SimulatedGateway("gw-clock", series=2)
    unsynced_1 = signed(clocked, 1, readings=flagged(1, UNSYNCED, [1.0, 2.0, float("nan")]),
                        events=[clock_event(T0, "clock.unsynchronised", since_ms=T0)])  # fmt: skip
    unsynced_2 = signed(clocked, 2, readings=flagged(2, UNSYNCED, [3.0, 4.0]), windows=window(0, 5.0))
    synced = signed(clocked, 3, readings=flagged(3, 0, [5.0, 6.0]), windows=window(2, 7.0),
                    events=[clock_event(T0 + 40_000, "clock.synchronised", since_ms=T0, step_ms=-3_000)],
                    gaps=[wire.Gap(0, T0, T0 + 5_000, 5, "disk_full")])  # fmt: skip
    return [
        [
            verified(plain, plain.batch(seq=0)),
            verified(clocked, unsynced_1),
            verified(plain, plain.batch(seq=1)),
        ],
        [verified(clocked, unsynced_2), verified(plain, plain.batch(seq=0)), verified(clocked, synced)],
        [
            verified(plain, plain.batch(seq=1, offset=2.0)),
            verified(clocked, signed(clocked, 4, windows=window(1, 6.0))),
        ],
    ]


@pytest.fixture
def both(tmp_path: Path, fresh_dsn: str) -> tuple[sqlite3.Connection, psycopg.Connection[tuple[object, ...]]]:
    lite, pg = SqliteStore(tmp_path / "received.db"), PostgresStore(fresh_dsn)
    for group in groups():
        assert lite.commit(group) == pg.commit(group)
    lite.close()
    pg.close()
    return sqlite3.connect(tmp_path / "received.db"), psycopg.connect(fresh_dsn)


@pytest.mark.parametrize("query", QUERIES)
def test_a_query_written_for_sqlite_returns_the_same_rows_on_postgresql(
    both: tuple[sqlite3.Connection, psycopg.Connection[tuple[object, ...]]], query: str
) -> None:
    lite, pg = both
    with lite, pg:
        expected = lite.execute(query).fetchall()
        got = pg.execute(query.encode()).fetchall()
    assert got == expected
    assert expected, "the scenario must give each query rows to compare"


def test_the_views_have_the_sqlite_tables_columns(
    both: tuple[sqlite3.Connection, psycopg.Connection[tuple[object, ...]]],
) -> None:
    lite, pg = both
    with lite, pg:
        for name in (
            "readings",
            "windows",
            "gaps",
            "events",
            "clock_corrections",
            "readings_corrected",
            "batches",
        ):
            expected = [d[0] for d in lite.execute(f"SELECT * FROM {name} LIMIT 0").description]
            cursor = pg.execute(f"SELECT * FROM {name} LIMIT 0".encode())
            got = [d.name for d in cursor.description or ()]
            assert got[: len(expected)] == expected, name
            assert got[len(expected) :] == (["batch_id"] if name == "batches" else []), name


def quarantine_and_keys(store: ReceiverStore) -> list[object]:
    """A session of quarantine and key registry calls, and what each store answered."""
    answers: list[object] = []
    blob = b"\xd2" + bytes(70_000)
    waiting = QuarantineEntry(blob, QuarantineReason.UNKNOWN_KEY, "kid 01", 5, "gw-q", b"k" * 8, b"d" * 32)
    bad = QuarantineEntry(blob, QuarantineReason.BAD_SIGNATURE, "no", 6, "gw-q", b"k" * 8)
    store.commit([], [waiting, bad, waiting])
    listed = store.quarantined()
    answers.append([(q.reason, q.detail, q.gateway_id, q.kid, q.size, len(q.blob)) for q in listed])
    answers.append([q.reason for q in store.quarantined(retryable_only=True, gateway_id="gw-q")])
    store.commit([], [], release=[listed[0].id])
    answers.append([q.reason for q in store.quarantined()])
    key = RegisteredKey(b"a" * 8, "gw-k", b"p" * 32, added_ms=3, source="import")
    answers += [store.add_key(key), store.add_key(key)]
    store.add_key(RegisteredKey(b"b" * 8, "gw-k", b"q" * 32, added_ms=2, source="rollover"))
    store.revoke_key(b"a" * 8, 9)
    answers += [store.keys(), store.keys("gw-k"), store.key(b"a" * 8), store.key(b"z" * 8)]
    for call in (
        lambda: store.add_key(RegisteredKey(b"a" * 8, "gw-other", b"p" * 32, 4, "cli")),
        lambda: store.revoke_key(b"z" * 8, 10),
    ):
        with pytest.raises(GatewayError) as raised:
            call()
        answers.append((type(raised.value), str(raised.value)))
    return answers


def test_quarantine_and_key_registry_answer_as_the_sqlite_store_does(tmp_path: Path, fresh_dsn: str) -> None:
    lite, pg = SqliteStore(tmp_path / "received.db"), PostgresStore(fresh_dsn)
    try:
        assert quarantine_and_keys(pg) == quarantine_and_keys(lite)
    finally:
        lite.close()
        pg.close()
