"""The store's public API: group commit, pending slices, sealing, outbox, seq, delivery."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from buffer import StalePending, Store, StoreOptions
from buffer.writer import Writer
from kernel.errors import StorageError
from kernel.model import HealthEvent, Quality, Reading

FAST = StoreOptions(commit_interval_s=0.02)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "buffer.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store.open(db, FAST)
    yield s
    s.close()


def readings(sensor: str, start: int, count: int, step: int = 1000) -> list[Reading]:
    return [Reading(sensor, "temperature", start + i * step, 20.0 + i / 8, "Cel") for i in range(count)]


def drain(store: Store, limit: int = 10_000) -> list[tuple[str, int, float]]:
    """Seal everything pending; return (sensor, ts, value) in slice order."""
    out = []
    while (p := store.pending(upto_ts_ms=None, limit=limit)) is not None:
        for i in range(len(p)):
            out.append((p.series_keys[p.series[i]][0], int(p.ts_ms[i]), float(p.value[i])))
        store.seal_batch(store.next_seq(), b"batch", p)
    return out


def test_open_creates_dirs_and_uses_wal(db: Path) -> None:
    with Store.open(db, FAST):
        assert db.exists()
        mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


async def test_flush_commits_everything_submitted_before(store: Store, db: Path) -> None:
    store.submit(readings("a", 0, 50))
    store.submit_event(HealthEvent(5, "driver", "stale", "no data"))
    await store.flush()
    stats = store.statistics()
    assert stats.committed == 50 and stats.pending == 50 and stats.queued == 0
    p = store.pending(upto_ts_ms=None, limit=100)
    assert p is not None and len(p) == 50
    assert p.events == (HealthEvent(5, "driver", "stale", "no data"),)


def test_committed_readings_survive_reopen(db: Path) -> None:
    with Store.open(db, FAST) as s:
        s.submit(readings("a", 0, 30))
        s.flush_blocking(5)
    with Store.open(db, FAST) as s:
        assert s.statistics().pending == 30
        got = drain(s)
    assert [ts for _, ts, _ in got] == [i * 1000 for i in range(30)]


def test_close_commits_what_is_queued(db: Path) -> None:
    s = Store.open(db, StoreOptions(commit_interval_s=60))
    s.submit(readings("a", 0, 7))
    s.close()
    with Store.open(db, FAST) as s:
        assert len(drain(s)) == 7


def test_group_commit_batches_many_submits(db: Path) -> None:
    with Store.open(db, StoreOptions(commit_interval_s=60)) as s:
        for r in readings("a", 0, 500):
            s.submit([r])
        s.flush_blocking(5)
        assert s.statistics().commits == 1


def test_max_rows_per_commit_splits_groups(db: Path) -> None:
    with Store.open(db, StoreOptions(commit_interval_s=60, max_rows_per_commit=100)) as s:
        s.submit(readings("a", 0, 350))
        s.flush_blocking(5)
        assert s.statistics().commits == 4
        assert len(drain(s)) == 350


def test_pending_orders_each_series_by_time_across_commits(store: Store) -> None:
    store.submit(readings("a", 10_000, 5) + readings("b", 0, 5))
    store.flush_blocking(5)
    store.submit(readings("a", 0, 5))  # late readings of a, committed later
    store.flush_blocking(5)
    p = store.pending(upto_ts_ms=None, limit=100)
    assert p is not None
    for local in range(len(p.series_keys)):
        ts = p.ts_ms[p.series == local]
        assert np.all(np.diff(ts) >= 0)
    assert np.all(np.diff(p.ts_ms) >= 0)  # oldest first overall


def test_pending_upto_is_exclusive_and_keeps_the_rest(store: Store) -> None:
    store.submit(readings("a", 0, 10))
    store.flush_blocking(5)
    p = store.pending(upto_ts_ms=4000, limit=100)
    assert p is not None and p.ts_ms.tolist() == [0, 1000, 2000, 3000]
    store.seal_batch(store.next_seq(), b"x", p)
    assert store.pending(upto_ts_ms=4000, limit=100) is None
    rest = store.pending(upto_ts_ms=None, limit=100)
    assert rest is not None and rest.ts_ms.tolist() == [i * 1000 for i in range(4, 10)]


def test_pending_limit_and_values_round_trip(store: Store) -> None:
    sent = [
        Reading("s1", "pm10", 1000 + i, v, "ug/m3", Quality.ESTIMATED if i % 3 else Quality.OK)
        for i, v in enumerate([0.1, -0.0, float("inf"), 1e300, 5e-324, 42.0, 7.25])
    ]
    store.submit(sent)
    store.flush_blocking(5)
    p = store.pending(upto_ts_ms=None, limit=3)
    assert p is not None and len(p) == 3
    store.seal_batch(store.next_seq(), b"x", p)
    q = store.pending(upto_ts_ms=None, limit=100)
    assert q is not None
    values = p.value.tolist() + q.value.tolist()
    quality = p.quality.tolist() + q.quality.tolist()
    assert values == [r.value for r in sent]
    assert str(values[1]) == "-0.0"
    assert quality == [int(r.quality) for r in sent]
    assert q.series_keys == (("s1", "pm10", "ug/m3"),)


def test_nan_values_are_kept(store: Store) -> None:
    store.submit([Reading("a", "t", 1, float("nan"), "C")])
    store.flush_blocking(5)
    p = store.pending(upto_ts_ms=None, limit=10)
    assert p is not None and np.isnan(p.value[0])


def test_every_reading_is_batched_exactly_once(store: Store) -> None:
    expected = []
    got = []
    for k in range(6):
        batch = readings("a", k * 100_000, 40) + readings("b", k * 100_000 + 7, 40)
        expected += [(r.sensor, r.ts_ms) for r in batch]
        store.submit(batch)
        store.flush_blocking(5)
        p = store.pending(upto_ts_ms=k * 100_000 + 20_000, limit=25)
        if p is not None:
            got += [(p.series_keys[s][0], int(t)) for s, t in zip(p.series, p.ts_ms, strict=True)]
            store.seal_batch(store.next_seq(), b"x", p)
    got += [(s, ts) for s, ts, _ in drain(store, limit=33)]
    assert sorted(got) == sorted(expected)
    total = store.statistics()
    assert total.pending == 0 and total.batched == len(expected)


def test_seq_persists_strictly_increases_and_is_checked(db: Path) -> None:
    with Store.open(db, FAST) as s:
        assert s.next_seq() == 1
        s.submit(readings("a", 0, 3))
        s.flush_blocking(5)
        p = s.pending(upto_ts_ms=None, limit=1)
        assert p is not None
        with pytest.raises(StorageError):
            s.seal_batch(5, b"x", p)
        s.seal_batch(1, b"x", p)
        assert s.next_seq() == 2
        s.mark_delivered(1)  # delivered rows are deleted, the seq is still used up
    with Store.open(db, FAST) as s:
        assert s.next_seq() == 2


def test_sealing_the_same_slice_twice_is_refused(store: Store) -> None:
    store.submit(readings("a", 0, 3))
    store.flush_blocking(5)
    p = store.pending(upto_ts_ms=None, limit=10)
    assert p is not None
    store.seal_batch(store.next_seq(), b"x", p)
    with pytest.raises(StalePending):
        store.seal_batch(store.next_seq(), b"y", p)
    assert [e.blob for e in store.undelivered()] == [b"x"]


def test_outbox_in_seq_order_and_delivery_deletes(store: Store) -> None:
    for k in range(3):
        store.submit(readings("a", k * 10, 2, step=1))
        store.flush_blocking(5)
        p = store.pending(upto_ts_ms=None, limit=10)
        assert p is not None
        store.seal_batch(store.next_seq(), f"b{k}".encode(), p)
    entries = store.undelivered()
    assert [(e.seq, e.blob, e.readings) for e in entries] == [
        (1, b"b0", 2),
        (2, b"b1", 2),
        (3, b"b2", 2),
    ]
    assert [e.seq for e in store.undelivered(after_seq=1, limit=1)] == [2]
    store.mark_delivered(2)
    store.mark_delivered(2)  # a repeated acknowledgement changes nothing
    assert [e.seq for e in store.undelivered()] == [1, 3]
    stats = store.statistics()
    assert stats.delivered == 2 and stats.outbox_rows == 2 and stats.used_bytes > 0


def test_events_are_uploaded_once_and_deleted_with_their_batch(store: Store, db: Path) -> None:
    store.submit_event(HealthEvent(1, "serial", "port_lost", "/dev/ttyUSB0"))
    store.flush_blocking(5)
    p = store.pending(upto_ts_ms=None, limit=10)
    assert p is not None and len(p) == 0 and len(p.events) == 1
    store.seal_batch(store.next_seq(), b"x", p)
    assert store.pending(upto_ts_ms=None, limit=10) is None
    store.mark_delivered(1)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM event").fetchone()[0] == 0


def test_pending_is_none_when_nothing_waits(store: Store) -> None:
    assert store.pending(upto_ts_ms=None, limit=10) is None


async def test_flush_does_not_block_the_event_loop(db: Path) -> None:
    s = await asyncio.to_thread(Store.open, db, StoreOptions(commit_interval_s=0.2))
    try:
        s.submit(readings("a", 0, 10))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await s.flush()
        task.cancel()
        assert ticks > 1  # the loop kept running while the writer committed
    finally:
        await asyncio.to_thread(s.close)


def test_calls_after_close_raise_storage_error(db: Path) -> None:
    s = Store.open(db, FAST)
    s.close()
    with pytest.raises(StorageError):
        s.pending(upto_ts_ms=None, limit=1)
    with pytest.raises(StorageError):
        s.flush_blocking(1)


def test_an_unstorable_reading_does_not_block_the_others(store: Store) -> None:
    bad = Reading("a", "t", 5, "not a number", "C")  # type: ignore[arg-type]
    store.submit([Reading("a", "t", 1, 1.0, "C"), bad, Reading("a", "t", 9, 2.0, "C")])
    with pytest.raises(StorageError):
        store.flush_blocking(5)  # the first attempt reports the bad reading...
    store.flush_blocking(5)  # ...the good ones are committed with the next one
    p = store.pending(upto_ts_ms=None, limit=10)
    assert p is not None and p.ts_ms.tolist() == [1, 9]
    assert store.statistics().dropped == 1


def test_a_flush_abandoned_by_a_closed_event_loop_does_not_stop_ingest(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real = Writer._commit

    def held(self: Writer, group: Any) -> bool:
        gate.wait(10)  # the writer is busy until the caller's loop is gone
        return real(self, group)

    monkeypatch.setattr(Writer, "_commit", held)
    with Store.open(db, StoreOptions(commit_interval_s=60)) as s:

        async def abandon() -> None:
            s.submit(readings("a", 0, 5))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.01):
                    await s.flush()

        asyncio.run(abandon())  # the loop is closed; its flush still waits in the writer
        gate.set()
        s.submit(readings("a", 5000, 5))
        s.flush_blocking(10)
        assert s.statistics().committed == 10
