"""Corrupt files at start: quarantined, a fresh buffer started, an event uploaded, the agent keeps running."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from buffer import Store, StoreOptions
from gateway.errors import StorageError
from gateway.model import Reading

FAST = StoreOptions(commit_interval_s=0.02)


def healthy(db: Path, count: int = 3000) -> None:
    """A buffer with some pages of committed readings, checkpointed into the main file."""
    with Store.open(db, FAST) as s:
        for k in range(10):
            s.submit(
                [Reading(f"s{i % 7}", "t", k * 10_000 + i, i * 0.37 + k, "C") for i in range(count // 10)]
            )
            s.flush_blocking(5)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def truncate(db: Path) -> None:
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 2 + 100)


def random_bytes(db: Path) -> None:
    db.write_bytes(os.urandom(64 * 1024))


def zero_page(db: Path) -> None:
    """Zero the root page of the chunk table, the page a reader needs first."""
    with sqlite3.connect(db) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'chunk'").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\0" * page_size)


def zero_header(db: Path) -> None:
    with open(db, "r+b") as f:
        f.write(b"\0" * 100)


@pytest.mark.parametrize("damage", [truncate, random_bytes, zero_page, zero_header])
def test_corrupt_file_is_quarantined_and_a_fresh_buffer_works(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "state" / "buffer.db"
    healthy(db)
    damage(db)
    original = db.read_bytes()
    with Store.open(db, FAST) as store:
        assert store.statistics().quarantined == 1
        store.submit([Reading("a", "t", 1, 2.5, "C")])
        store.flush_blocking(5)
        p = store.pending(upto_ts_ms=None, limit=100)
        assert p is not None and p.value.tolist() == [2.5]
        (event,) = p.events
        assert event.kind == "buffer.quarantined" and "quarantine" in event.detail
        store.seal_batch(store.next_seq(), b"x", p)
    moved = list((tmp_path / "state" / "quarantine").glob("*.db"))
    assert len(moved) == 1
    assert moved[0].read_bytes() == original  # kept as it was, for a post-mortem
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_healthy_file_is_not_quarantined(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    healthy(db)
    with Store.open(db, FAST) as store:
        stats = store.statistics()
        assert stats.quarantined == 0 and stats.pending == 3000
    assert not (tmp_path / "quarantine").exists()


def test_empty_file_is_a_fresh_buffer(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    db.touch()
    with Store.open(db, FAST) as store:
        assert store.statistics().quarantined == 0
        assert store.next_seq() == 1


def test_a_database_of_a_newer_schema_is_refused_not_destroyed(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    healthy(db, 100)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(StorageError):
        Store.open(db, FAST)
    assert not (tmp_path / "quarantine").exists()
