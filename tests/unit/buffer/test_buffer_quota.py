"""Quota, full disk and retention: what is given up is always accounted for by gap records."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import buffer.schema
import buffer.writer
from buffer import GapRecord, Store, StoreOptions
from gateway.model import Reading

GROUP = 1000
RNG = np.random.default_rng(3)


def group(k: int, sensors: int = 4) -> list[Reading]:
    """GROUP readings of tick k.. with incompressible values (about 10 bytes each on disk)."""
    values = RNG.random(GROUP)
    return [
        Reading(f"s{i % sensors}", "noise", (k * GROUP + i) * 10, float(values[i]), "1") for i in range(GROUP)
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


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: a real ENOSPC (needs root; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(folder: Path) -> None:
    """Another program takes every free byte of the filesystem."""
    with open(folder / "filler", "wb") as f:
        block = b"\0" * 65536
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError:
            pass


def test_real_enospc_when_the_disk_fills_behind_the_stores_back(tiny_fs: Path) -> None:
    db = tiny_fs / "b.db"
    with Store.open(db, options()) as store:
        fill(store, range(100))
        fill_disk(tiny_fs)
        for k in range(100, 300):
            store.submit(group(k))
            try:
                store.flush_blocking(10)
            except Exception as exc:
                assert "full" in str(exc)
        ts, gaps = drain(store)
        stats = store.statistics()
    assert stats.dropped > 0 and stats.errors > 0  # a real SQLITE_FULL happened
    assert len(ts) + sum(g.count for g in gaps) == 300 * GROUP
    assert {r.ts_ms for r in group(299)} <= set(ts)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_min_free_bytes_is_kept_on_the_filesystem(tiny_fs: Path) -> None:
    db = tiny_fs / "b.db"
    with Store.open(db, options(min_free_bytes=3 << 20)) as store:
        fill(store, range(600))
        ts, gaps = drain(store)
    assert gaps and len(ts) + sum(g.count for g in gaps) == 600 * GROUP
    stat = os.statvfs(tiny_fs)
    free = stat.f_bavail * stat.f_frsize
    assert free >= 3 << 20


def test_batched_raw_readings_are_pruned_after_keep_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buffer.writer, "PRUNE_EVERY_S", 0.0)
    now = int(time.time() * 1000)
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
