"""Quota, full disk and retention: what is given up is always accounted for by gap records."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import buffer.schema
import buffer.writer
from buffer import GapRecord, Store, StoreOptions
from kernel.model import HealthEvent, Reading
from kernel.wallclock import now_ms

GROUP = 1000
RNG = np.random.default_rng(3)


def group(k: int, sensors: int = 4, size: int = GROUP) -> list[Reading]:
    """`size` readings of tick k.. with incompressible values (about 10 bytes each on disk)."""
    values = RNG.random(size)
    return [
        Reading(f"s{i % sensors}", "noise", (k * size + i) * 10, float(values[i]), "1") for i in range(size)
    ]


def fill(store: Store, groups: range) -> None:
    for k in groups:
        store.submit(group(k))
        store.flush_blocking(10)


def drain(store: Store) -> tuple[list[int], list[GapRecord]]:
    """Seal everything: timestamps batched, gap records uploaded."""
    ts: list[int] = []
    gaps: list[GapRecord] = []
    while (p := store.pending(upto_ts_ms=None, limit=50_000)) is not None:
        ts += p.ts_ms.tolist()
        gaps += p.gaps
        store.seal_batch(store.next_seq(), b"x", p)
    return ts, gaps


def options(**kw: object) -> StoreOptions:
    base: dict[str, object] = {"commit_interval_s": 0.02, "min_free_bytes": 0}
    base.update(kw)
    return StoreOptions(**base)  # type: ignore[arg-type]


def used_bytes(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return buffer.schema.used_bytes(conn)


def test_drop_oldest_keeps_the_newest_and_accounts_for_every_reading(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    with Store.open(db, options(max_bytes=200_000)) as store:
        fill(store, range(40))
        assert used_bytes(db) <= 200_000
        ts, gaps = drain(store)
        stats = store.statistics()
    assert {g.reason for g in gaps} == {"buffer_full"}
    assert len(ts) + sum(g.count for g in gaps) == 40 * GROUP  # nothing lost silently
    assert stats.dropped == sum(g.count for g in gaps) > 0
    newest = {r.ts_ms for r in group(39)}
    assert newest <= set(ts)
    assert max(g.to_ms for g in gaps) < min(ts)  # the oldest went first


def test_drop_newest_keeps_the_oldest(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    with Store.open(db, options(max_bytes=200_000, policy="drop_newest")) as store:
        fill(store, range(40))
        ts, gaps = drain(store)
    assert {r.ts_ms for r in group(0)} <= set(ts)
    assert len(ts) + sum(g.count for g in gaps) == 40 * GROUP
    assert gaps and min(g.from_ms for g in gaps) > max(ts)
    assert {(g.sensor, g.reason) for g in gaps} == {(f"s{i}", "buffer_full") for i in range(4)}


def test_batched_raw_readings_are_given_up_before_unbatched_ones(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    with Store.open(db, options(max_bytes=120_000)) as store:
        fill(store, range(10))
        first, _ = drain(store)
        fill(store, range(10, 20))
        ts, gaps = drain(store)
        stats = store.statistics()
    assert len(first) == 10 * GROUP
    assert gaps == [] and len(ts) == 10 * GROUP
    assert stats.pruned > 0 and stats.dropped == 0


class Outage:
    """The batcher keeps sealing while the link is down: nothing is ever acknowledged.

    Each blob carries what the backend would get (timestamps, gap counts, event kinds), padded to
    about the size of a real batch of incompressible values.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def seal(self) -> None:
        while (p := self.store.pending(upto_ts_ms=None, limit=50_000)) is not None:
            content = {
                "ts": p.ts_ms.tolist(),
                "gaps": [g.count for g in p.gaps],
                "events": [e.kind for e in p.events],
            }
            blob = json.dumps(content).encode() + bytes(4 * len(p))
            self.store.seal_batch(self.store.next_seq(), blob, p)

    def backend_would_get(self) -> tuple[list[int], int, list[str]]:
        """Timestamps, readings counted by gap records, event kinds: outbox plus what is pending."""
        self.seal()
        ts: list[int] = []
        gap_count = 0
        events: list[str] = []
        for entry in self.store.undelivered(limit=10_000):
            content = json.loads(entry.blob.rstrip(b"\0"))
            ts += content["ts"]
            gap_count += sum(content["gaps"])
            events += content["events"]
        return ts, gap_count, events


OUTAGE_COMMITS = 300
OUTAGE_GROUP = 200


def run_outage(store: Store) -> tuple[list[int], int, list[str]]:
    """1 s commits of 200 readings, a batch sealed every 5 commits, nothing acknowledged."""
    outage = Outage(store)
    store.submit_event(HealthEvent(1, "serial", "sensor.stale", "pm-1"))
    for k in range(OUTAGE_COMMITS):
        store.submit(group(k, size=OUTAGE_GROUP))
        store.flush_blocking(10)
        if k % 5 == 4:
            outage.seal()
    return outage.backend_would_get()


def test_drop_oldest_in_an_outage_gives_up_the_oldest_batches_as_gaps(tmp_path: Path) -> None:
    with Store.open(tmp_path / "b.db", options(max_bytes=300_000)) as store:
        ts, gap_count, events = run_outage(store)
        stats = store.statistics()
    submitted = OUTAGE_COMMITS * OUTAGE_GROUP
    assert stats.dropped > submitted // 3
    assert len(ts) == len(set(ts))
    assert len(ts) + gap_count == submitted  # every dropped reading is counted by a gap record
    assert sorted(ts) == list(range(min(ts), submitted * 10, 10))  # the oldest went, no holes
    # the event travelled in a batch that was dropped: it is uploaded again, with the drop's notice
    assert "sensor.stale" in events and "buffer.batches_dropped" in events


def test_drop_newest_in_an_outage_keeps_the_oldest_batches(tmp_path: Path) -> None:
    with Store.open(tmp_path / "b.db", options(max_bytes=300_000, policy="drop_newest")) as store:
        ts, gap_count, events = run_outage(store)
    assert len(ts) + gap_count == OUTAGE_COMMITS * OUTAGE_GROUP
    assert sorted(ts) == list(range(0, len(ts) * 10, 10))  # the oldest stay
    assert gap_count > 0 and "sensor.stale" in events and "buffer.batches_dropped" not in events


@pytest.fixture
def page_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every connection of the store gets PRAGMA max_page_count=<limit[0]>: a full disk."""
    limit = [0]
    real = buffer.schema.connect

    def limited(path: Path, **kw: str) -> sqlite3.Connection:
        conn = real(path, **kw)
        if limit[0]:
            conn.execute(f"PRAGMA max_page_count={limit[0]}")
        return conn

    monkeypatch.setattr(buffer.schema, "connect", limited)
    yield limit


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_sqlite_full_triggers_the_policy_and_never_stops_ingest(
    tmp_path: Path, page_limit: list[int], policy: str
) -> None:
    db = tmp_path / "b.db"
    Store.open(db).close()
    page_limit[0] = 300  # 300 KiB: the quota (1 GiB) never sees it coming
    with Store.open(db, options(policy=policy)) as store:
        for k in range(60):
            store.submit(group(k))
            try:
                store.flush_blocking(10)
            except Exception as exc:  # a flush may report the full disk; ingest must go on
                assert "full" in str(exc)
        ts, gaps = drain(store)
        # the disk stays full of unbatched readings until batching lets the store evict them:
        # gap records that could not be written yet are written with the next commit
        store.submit(group(60))
        store.flush_blocking(10)
        more_ts, more_gaps = drain(store)
        ts, gaps = ts + more_ts, gaps + more_gaps
        stats = store.statistics()
    assert stats.errors > 0 and stats.dropped > 0
    assert {g.reason for g in gaps} <= {"disk_full", "buffer_full"}
    assert len(ts) + sum(g.count for g in gaps) == 61 * GROUP
    if policy == "drop_oldest":
        assert {r.ts_ms for r in group(59)} <= set(ts)
    else:
        assert {r.ts_ms for r in group(0)} <= set(ts)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_batched_raw_readings_are_pruned_after_keep_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buffer.writer, "PRUNE_EVERY_S", 0.0)
    now = now_ms()
    old = [Reading("a", "t", now - 3_600_000 + i, 1.0, "C") for i in range(100)]
    also_old = [Reading("b", "t", now - 3_600_000 + i, 2.0, "C") for i in range(100)]
    db = tmp_path / "b.db"
    with Store.open(db, options(keep_raw_s=60.0)) as store:
        store.submit(old)
        store.flush_blocking(5)
        drain(store)  # batched: may be pruned once older than keep_raw
        store.submit(also_old)  # old but never batched: must stay
        store.flush_blocking(5)
        store.submit([Reading("c", "t", now, 3.0, "C")])
        store.flush_blocking(5)
        deadline = time.monotonic() + 5
        while store.statistics().pruned == 0 and time.monotonic() < deadline:
            store.submit([Reading("c", "t", now + 1, 3.0, "C")])
            store.flush_blocking(5)
        assert store.statistics().pruned == 100
        p = store.pending(upto_ts_ms=None, limit=1000)
        assert p is not None and {k[0] for k in p.series_keys} == {"b", "c"}
