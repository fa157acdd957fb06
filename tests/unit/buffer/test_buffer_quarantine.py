"""Corrupt files at start: quarantined, a fresh buffer started, an event uploaded, the agent keeps running."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

import buffer.schema
from buffer import Store, StoreOptions
from gateway.cli.buffer import group
from kernel.errors import StorageError
from kernel.model import Reading

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
    with capture_logs() as logs, Store.open(db, FAST) as store:
        assert store.statistics().quarantined == 1
        (logged,) = [e for e in logs if "quarantined" in e["event"]]
        assert logged["log_level"] == "warning" and "quarantine" in logged["moved_to"]
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


def rot_chunk(db: Path, chunk_id: int) -> None:
    """Flip bits inside one chunk's data: the pages stay valid, quick_check cannot see it."""
    with sqlite3.connect(db) as conn:
        (data,) = conn.execute("SELECT data FROM chunk WHERE id = ?", (chunk_id,)).fetchone()
        rotten = bytes(b ^ 0x5A if 2 <= i < 12 else b for i, b in enumerate(data))
        conn.execute("UPDATE chunk SET data = ? WHERE id = ?", (rotten, chunk_id))


def test_a_rotten_chunk_is_reported_and_does_not_block_batching(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    healthy(db, 3000)  # 10 chunks of 300 readings
    rot_chunk(db, 4)
    with Store.open(db, FAST) as store:
        assert store.statistics().quarantined == 0  # the file itself is fine
        got = []
        events = []
        while (p := store.pending(upto_ts_ms=None, limit=700)) is not None:
            got += p.ts_ms.tolist()
            events += p.events
            store.seal_batch(store.next_seq(), b"x", p)
        stats = store.statistics()
    assert len(got) == 2700 and stats.dropped == 300 and stats.pending == 0
    assert not any(30_000 <= ts < 40_000 for ts in got)  # chunk 4 held k = 3
    (event,) = events
    assert event.kind == "buffer.chunk_unreadable" and "300 readings" in event.detail


def test_a_technician_can_still_look_at_a_buffer_with_a_rotten_chunk(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    healthy(db, 3000)
    rot_chunk(db, 10)  # the newest
    result = CliRunner().invoke(group, ["recent", "--state-dir", str(tmp_path), "--json", "--limit", "5"])
    assert result.exit_code == 0
    assert [r["ts_ms"] // 10_000 for r in json.loads(result.output)] == [8] * 5


class FailingChecks:
    """Connections whose quick_check fails with an I/O error (a dying card, otherwise impossible here)."""

    def __init__(self, code: int, times: int) -> None:
        self.code = code
        self.left = times
        self.attempts = 0

    def connect(self, real: Any) -> Any:
        checks = self

        class Connection:
            def __init__(self, path: Path, **kw: str) -> None:
                self._conn = real(path, **kw)

            def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
                if sql == "PRAGMA quick_check":
                    checks.attempts += 1
                    if checks.left > 0:
                        checks.left -= 1
                        exc = sqlite3.OperationalError("disk I/O error")
                        exc.sqlite_errorcode = checks.code  # type: ignore[attr-defined]
                        raise exc
                return self._conn.execute(sql, params)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._conn, name)

        return Connection


SQLITE_IOERR_READ, SQLITE_IOERR_WRITE = 266, 778


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(code: int, times: int) -> FailingChecks:
        failing = FailingChecks(code, times)
        monkeypatch.setattr(buffer.schema, "connect", failing.connect(buffer.schema.connect))
        return failing

    return install


def test_a_file_that_cannot_be_read_three_times_is_quarantined(tmp_path: Path, checks: Any) -> None:
    db = tmp_path / "buffer.db"
    healthy(db, 100)
    failing = checks(SQLITE_IOERR_READ, times=3)
    with Store.open(db, FAST) as store:
        assert store.statistics().quarantined == 1 and store.statistics().pending == 0
    assert failing.attempts == 3  # three looks before giving the file up
    assert len(list((tmp_path / "quarantine").glob("*.db"))) == 1


def test_a_read_error_that_goes_away_is_not_corruption(tmp_path: Path, checks: Any) -> None:
    db = tmp_path / "buffer.db"
    healthy(db, 100)
    checks(SQLITE_IOERR_READ, times=2)
    with Store.open(db, FAST) as store:
        assert store.statistics().quarantined == 0 and store.statistics().pending == 100


def test_a_write_error_with_space_left_is_refused_not_quarantined(tmp_path: Path, checks: Any) -> None:
    db = tmp_path / "buffer.db"
    healthy(db, 100)
    failing = checks(SQLITE_IOERR_WRITE, times=3)
    with pytest.raises(StorageError):
        Store.open(db, FAST)
    assert not (tmp_path / "quarantine").exists()
    failing.left = 0  # the card is replaced, or the filesystem remounted read-write
    with Store.open(db, FAST) as store:
        assert store.statistics().pending == 100


def unparsable_schema(db: Path) -> None:
    """The chunk table's CREATE statement ends in bytes that are not UTF-8: SQLite's error text then is not either."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA writable_schema=ON")
        conn.execute(
            "UPDATE sqlite_master SET sql = CAST(? AS TEXT) WHERE name = 'chunk'",
            (b"CREATE TABLE chunk \xff\xfe",),
        )


def test_an_error_text_that_is_not_utf8_is_a_quarantine_and_one_line_in_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    healthy(db, count=300)
    epoch = sqlite3.connect(db).execute("SELECT value FROM identity").fetchone()[0]
    unparsable_schema(db)
    result = CliRunner().invoke(group, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 3
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert result.output.startswith("error: cannot read buffer")
    with Store.open(db, FAST) as store:
        assert store.statistics().quarantined == 1
        assert store.epoch != epoch
        store.submit([Reading("a", "t", 1, 2.5, "C")])
        store.flush_blocking(5)
        pending = store.pending()
        assert pending is not None and pending.value.tolist() == [2.5]
    (event,) = pending.events
    detail = json.loads(event.detail)
    assert "UnicodeDecodeError" in detail["reason"]
    assert (detail["old_epoch"], detail["epoch"]) == (None, store.epoch.hex())  # its schema cannot be read
    assert (tmp_path / "quarantine" / detail["file"]).exists()


def test_corruption_found_while_running_is_quarantined_and_ingest_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    with Store.open(db, StoreOptions(commit_interval_s=3600)) as store:
        first_epoch = store.epoch
        store.submit([Reading("a", "t", 1, 1.0, "C")])
        store.flush_blocking(5)
        with sqlite3.connect(db) as other:  # garbage behind the running store's back (bit rot in a name)
            other.execute("UPDATE series SET sensor = CAST(? AS TEXT)", (b"\xff\xfe",))
        store.submit([Reading("b", "t", 2, 2.0, "C")])  # queued, not committed yet
        with pytest.raises(StorageError, match="quarantined"):
            store.pending()
        store.submit([Reading("c", "t", 3, 3.0, "C")])
        store.flush_blocking(5)
        pending = store.pending()
        assert pending is not None
        assert sorted(zip([k[0] for k in pending.series_keys], pending.value.tolist(), strict=True)) == [
            ("b", 2.0),
            ("c", 3.0),
        ]  # what was queued moved over; "a" stays in the quarantined file
        (event,) = pending.events
        detail = json.loads(event.detail)
        assert (detail["old_epoch"], detail["epoch"]) == (first_epoch.hex(), store.epoch.hex())
        assert store.statistics().quarantined == 1
        store.seal_batch(store.next_seq(), b"x", pending)
        (entry,) = store.undelivered()
        assert entry.seq == 1 and entry.epoch == store.epoch
        store.mark_delivered(1, first_epoch)  # an acknowledgement for the old database's seq 1
        assert len(store.undelivered()) == 1  # does not delete the new database's seq 1
        store.mark_delivered(1, store.epoch)
        assert store.undelivered() == []
    assert len(list((tmp_path / "quarantine").glob("*.db"))) == 1


def test_a_group_commit_that_finds_the_file_corrupt_leads_to_a_quarantine_keeping_the_queue(
    tmp_path: Path,
) -> None:
    db = tmp_path / "buffer.db"
    with Store.open(db, FAST) as store:
        for k in range(20):
            store.submit([Reading(f"s{i % 3}", "t", k * 1000 + i, float(i), "C") for i in range(200)])
            store.flush_blocking(5)
        with sqlite3.connect(db) as other:
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the pages in the main file, caches reset
        with open(db, "r+b") as f:  # the chunk table's root page overwritten behind the store's back
            f.seek((root_page(db, "chunk") - 1) * 1024)
            f.write(b"\xff" * 1024)
        store.submit([Reading("x", "t", 10**9, 1.0, "C")])
        with pytest.raises(StorageError, match="malformed"):
            store.flush_blocking(5)  # the commit fails: the file is corrupt
        store.pending()  # the next batching call quarantines it
        store.flush_blocking(5)
        pending = store.pending()
    assert pending is not None and pending.series_keys == (("x", "t", "C"),)  # the queued reading
    assert [e.kind for e in pending.events] == ["buffer.quarantined"]
    assert store.statistics().quarantined == 1


def root_page(db: Path, table: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0])
