"""Fault injection: the Nth SQLite call of an ingest-batch-ack cycle fails with an I/O error.

N is swept over every call of the cycle, once and persistently. The store must survive or stop
cleanly (only StorageError escapes, close() returns), and after a clean restart nothing committed
is lost, no reading is in two places, and no batch is half-present.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import buffer.schema
from buffer import PendingSlice, Store, StoreOptions
from kernel.errors import StorageError
from kernel.model import Reading

SQLITE_IOERR = 10


class Faults:
    """Counts SQLite calls of every store connection and fails the chosen one(s)."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_at: int | None = None
        self.persistent = False
        self.armed = False
        self._lock = threading.Lock()

    def check(self) -> None:
        with self._lock:
            if not self.armed:
                return
            self.calls += 1
            n = self.calls
        if self.fail_at is not None and (n == self.fail_at or (self.persistent and n > self.fail_at)):
            exc = sqlite3.OperationalError("disk I/O error")
            exc.sqlite_errorcode = SQLITE_IOERR  # type: ignore[attr-defined]
            raise exc


class FaultyConnection:
    """A sqlite3 connection whose execute/executemany may fail before they run."""

    def __init__(self, conn: sqlite3.Connection, faults: Faults) -> None:
        self._conn = conn
        self._faults = faults

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self._faults.check()
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        self._faults.check()
        return self._conn.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    f = Faults()
    real = buffer.schema.connect

    def faulty(path: Path, **kw: str) -> sqlite3.Connection:
        return FaultyConnection(real(path, **kw), f)  # type: ignore[return-value]

    monkeypatch.setattr(buffer.schema, "connect", faulty)
    yield f


def readings(first: int, count: int) -> list[Reading]:
    return [Reading(f"s{i % 3}", "t", first + i, i / 4, "C") for i in range(count)]


def blob(p: PendingSlice) -> bytes:
    keys = [[p.series_keys[s][0], int(t)] for s, t in zip(p.series, p.ts_ms, strict=True)]
    return json.dumps(keys).encode()


class Cycle:
    """Ingest, batch, acknowledge, twice; remembers what the store confirmed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.accepted: set[tuple[str, int]] = set()
        self.delivered: list[tuple[str, int]] = []
        self.submitted: list[tuple[str, int]] = []
        self.errors = 0

    def step(self, action: Any) -> None:
        try:
            action()
        except StorageError:
            self.errors += 1  # the runtime logs it and tries again later

    def ingest(self, first: int) -> None:
        batch = readings(first, 60)
        self.store.submit(batch)
        self.submitted += [(r.sensor, r.ts_ms) for r in batch]

        def flush() -> None:
            self.store.flush_blocking(10)
            self.accepted |= set(self.submitted)

        self.step(flush)

    def seal(self, upto: int | None) -> None:
        def work() -> None:
            p = self.store.pending(upto_ts_ms=upto, limit=1000)
            if p is not None:
                self.store.seal_batch(self.store.next_seq(), blob(p), p)

        self.step(work)

    def ack(self) -> None:
        def work() -> None:
            for entry in self.store.undelivered(limit=1):
                self.store.mark_delivered(entry.seq)
                self.delivered += [tuple(k) for k in json.loads(entry.blob)]  # type: ignore[misc]

        self.step(work)

    def run(self) -> None:
        self.ingest(0)
        self.seal(None)
        self.ack()
        self.ingest(1000)
        self.seal(1030)
        self.ack()
        self.seal(None)


def run_cycle(db: Path, faults: Faults) -> Cycle:
    store = Store.open(db, StoreOptions(commit_interval_s=60))
    faults.armed = True
    cycle = Cycle(store)
    cycle.run()
    store.close()
    faults.armed = False
    return cycle


def check_after_restart(db: Path, cycle: Cycle) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    found: list[tuple[str, int]] = list(cycle.delivered)
    with Store.open(db, StoreOptions(commit_interval_s=60)) as store:
        for entry in store.undelivered(limit=1000):
            keys = [tuple(k) for k in json.loads(entry.blob)]
            assert len(keys) == entry.readings  # a batch is whole or absent
            found += keys  # type: ignore[arg-type]
        p = store.pending(upto_ts_ms=None, limit=100_000)
        if p is not None:
            found += [(p.series_keys[s][0], int(t)) for s, t in zip(p.series, p.ts_ms, strict=True)]
    duplicates = [k for k, n in Counter(found).items() if n > 1]
    assert duplicates == []
    assert cycle.accepted <= set(found)  # nothing committed is lost
    assert set(found) <= set(cycle.submitted)


def test_cycle_without_faults_delivers_everything(tmp_path: Path, faults: Faults) -> None:
    cycle = run_cycle(tmp_path / "b.db", faults)
    assert faults.calls > 20
    assert len(cycle.accepted) == 120
    check_after_restart(tmp_path / "b.db", cycle)


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
def test_io_error_at_every_call_of_the_cycle(tmp_path: Path, faults: Faults, persistent: bool) -> None:
    run_cycle(tmp_path / "probe.db", faults)
    total = faults.calls
    failed_runs = 0
    for n in range(1, total + 2):
        db = tmp_path / f"{n}" / "b.db"
        faults.calls = 0
        faults.fail_at = n
        faults.persistent = persistent
        cycle = run_cycle(db, faults)
        faults.fail_at = None
        check_after_restart(db, cycle)
        failed_runs += cycle.errors > 0
    assert failed_runs >= total // 2  # the faults were seen, not swallowed


def test_a_failing_disk_is_logged_once_and_its_recovery_too(tmp_path: Path, faults: Faults) -> None:
    with capture_logs() as logs, Store.open(tmp_path / "b.db", StoreOptions(commit_interval_s=60)) as store:
        faults.armed, faults.fail_at, faults.persistent = True, 1, True
        for first in (0, 100, 200):
            store.submit(readings(first, 10))
            with pytest.raises(StorageError):
                store.flush_blocking(10)
        faults.armed = False
        store.flush_blocking(10)
        p = store.pending(upto_ts_ms=None, limit=100)
    assert p is not None and len(p) == 30  # nothing was lost while the disk failed
    levels = [(e["log_level"], e["event"]) for e in logs if e["event"].startswith("buffer.storage_error.")]
    assert [lv for lv, _ in levels].count("warning") == 1
    assert levels[0][0] == "warning" and levels[0][1] == "buffer.storage_error.failed"
    assert levels[-1] == ("info", "buffer.storage_error.recovered")
