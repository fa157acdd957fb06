"""buffer.db, its WAL and SHM and quarantined files are 0640 whatever the umask: they hold every reading."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from buffer import Store, StoreOptions
from kernel.model import Reading

FAST = StoreOptions(commit_interval_s=0.01)


@pytest.fixture(params=[0o000, 0o022, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_buffer_and_its_wal_and_shm_are_0640(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "buffer.db"
    with Store.open(db, FAST) as store:
        store.submit([Reading("s", "t", 1, 1.0, "C")])
        store.flush_blocking(5)
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert [mode(f) for f in files] == [0o640] * 3


def test_a_buffer_made_world_readable_before_is_repaired_at_open(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    with Store.open(db, FAST):
        pass
    db.chmod(0o644)  # as an agent of an earlier version left it when run outside the systemd unit
    with Store.open(db, FAST) as store:
        store.submit([Reading("s", "t", 1, 1.0, "C")])
        store.flush_blocking(5)
        assert [mode(db), mode(Path(f"{db}-wal")), mode(Path(f"{db}-shm"))] == [0o640] * 3


def test_a_quarantined_file_is_0640(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "buffer.db"
    db.write_bytes(os.urandom(8192))
    db.chmod(0o644)
    with Store.open(db, FAST) as store:
        assert store.statistics().quarantined == 1
    (moved,) = (tmp_path / "quarantine").glob("*.db")
    assert mode(moved) == 0o640 and mode(db) == 0o640
    with sqlite3.connect(db) as conn:  # and the fresh one is a real database
        assert conn.execute("SELECT count(*) FROM identity").fetchone() == (1,)
