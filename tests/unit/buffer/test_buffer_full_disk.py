"""A really full filesystem (a tiny tmpfs and a tiny ext4, mounted for the test; needs root).

The store must apply its policy, keep every loss accounted for by gap records, keep the database
intact, and never stop ingest or refuse to start: no restart loop because the disk is full.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_buffer_quota import drain

import buffer.quarantine
from buffer import Store, StoreOptions
from kernel.model import Reading

GROUP = 1000
RNG = np.random.default_rng(11)


def group(k: int) -> list[Reading]:
    """GROUP readings with incompressible values (about 10 bytes each on disk)."""
    values = RNG.random(GROUP)
    return [Reading(f"s{i % 4}", "noise", (k * GROUP + i) * 10, float(values[i]), "1") for i in range(GROUP)]


def options(**kw: object) -> StoreOptions:
    base: dict[str, object] = {"commit_interval_s": 0.02, "min_free_bytes": 0}
    base.update(kw)
    return StoreOptions(**base)  # type: ignore[arg-type]


def _mount(args: list[str]) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@pytest.fixture(params=["tmpfs", "ext4"])
def tiny_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs or a 12 MiB ext4 image on a loop device (skipped where mounting is not allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if request.param == "tmpfs":
        ok = _mount(["-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)])
    else:
        image = tmp_path / "tiny.img"
        with image.open("wb") as f:
            f.truncate(12 << 20)
        made = subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], capture_output=True, check=False
        )
        ok = made.returncode == 0 and _mount(["-o", "loop", str(image), str(mount)])
    if not ok:
        pytest.skip(f"cannot mount a {request.param} here (needs root)")
    yield mount
    if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(folder: Path, name: str = "filler") -> Path:
    """Another program takes every free byte of the filesystem."""
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):
            block = b"\xa5" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


def ingest(store: Store, groups: range) -> None:
    for k in groups:
        store.submit(group(k))
        try:
            store.flush_blocking(10)
        except Exception as exc:  # a flush may report the full disk; ingest must go on
            assert "full" in str(exc)


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_real_enospc_when_the_disk_fills_behind_the_stores_back(tiny_fs: Path) -> None:
    db = tiny_fs / "b.db"
    with Store.open(db, options()) as store:
        ingest(store, range(100))
        fill_disk(tiny_fs)
        ingest(store, range(100, 300))
        ts, gaps = drain(store)
        stats = store.statistics()
    assert stats.dropped > 0 and stats.errors > 0  # a real SQLITE_FULL happened
    assert len(ts) + sum(g.count for g in gaps) == 300 * GROUP
    assert {r.ts_ms for r in group(299)} <= set(ts)
    assert integrity(db) == "ok"


def test_min_free_bytes_is_kept_on_the_filesystem(tiny_fs: Path) -> None:
    db = tiny_fs / "b.db"
    with Store.open(db, options(min_free_bytes=3 << 20)) as store:
        ingest(store, range(600))
        ts, gaps = drain(store)
    assert gaps and {g.reason for g in gaps} == {"disk_full"}
    assert len(ts) + sum(g.count for g in gaps) == 600 * GROUP
    stat = os.statvfs(tiny_fs)
    assert stat.f_bavail * stat.f_frsize >= 3 << 20


def test_a_full_disk_at_start_is_opened_with_the_ballast(
    tiny_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tiny_fs / "buffer.db"
    with Store.open(db, options()) as store:
        ingest(store, range(50))
    fill_disk(tiny_fs)

    def no_waiting(seconds: float) -> None:
        raise AssertionError("the ballast alone should have been enough to open")

    monkeypatch.setattr(buffer.quarantine, "pause", no_waiting)
    with Store.open(db, options()) as store:
        assert store.statistics().quarantined == 0
        assert store.statistics().pending == 50 * GROUP
        ingest(store, range(50, 60))
        ts, gaps = drain(store)
    assert len(ts) + sum(g.count for g in gaps) == 60 * GROUP
    assert not (tiny_fs / "quarantine").exists()
    assert integrity(db) == "ok"


def test_a_disk_too_full_to_open_is_waited_for_not_quarantined(
    tiny_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ballast left and not a byte free: a healthy buffer is never moved aside; open waits."""
    db = tiny_fs / "buffer.db"
    with Store.open(db, options()) as store:
        ingest(store, range(50))
    (tiny_fs / "buffer.db.reserve").unlink()
    filler = fill_disk(tiny_fs)
    pauses: list[float] = []

    def space_comes_back(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            filler.unlink()  # the technician deletes the other program's file

    monkeypatch.setattr(buffer.quarantine, "pause", space_comes_back)
    with Store.open(db, options()) as store:
        assert store.statistics().quarantined == 0
        assert store.statistics().pending == 50 * GROUP
        ingest(store, range(50, 60))
        ts, _ = drain(store)
    assert len(pauses) == 3 and pauses[0] < pauses[1] < pauses[2]  # backing off, not spinning
    assert len(ts) == 60 * GROUP
    assert not (tiny_fs / "quarantine").exists()
    assert integrity(db) == "ok"
