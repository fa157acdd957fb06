"""The corruption sweep: random byte flips, truncations and page overwrites of a real buffer and its WAL.

After each, the store opens (or quarantines and starts fresh), accepts new readings and seals them into
a batch that is delivered; no exception escapes. The figures are printed (pytest -s) for the record.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from buffer import Store, StoreOptions
from kernel.model import HealthEvent, Reading

FAST = StoreOptions(commit_interval_s=0.01)
CASES = 240
SEED = 13
PAGE = 1024  # buffer.schema.PAGE_SIZE
WAL_HEADER, FRAME_HEADER = 32, 24


@dataclass
class Figures:
    cases: int = 0
    quarantines: int = 0
    delivered_after: int = 0
    tracebacks: int = 0


def build_template(folder: Path) -> None:
    """A buffer with batched, delivered and pending readings, events, gaps' names; the last commits in the WAL."""
    db = folder / "buffer.db"
    store = Store.open(db, FAST)
    for k in range(12):
        store.submit(
            [Reading(f"s{i % 5}", "air_temperature", k * 1000 + i, i * 0.25, "°C") for i in range(150)]
        )
        store.submit_event(HealthEvent(k, "driver", "stale", f"sensor s{k % 5} silent for {k} s"))
        store.flush_blocking(5)
        if k in (3, 6):
            pending = store.pending(limit=400)
            assert pending is not None
            store.seal_batch(store.next_seq(), b"signed batch", pending)
        if k == 4:
            store.mark_delivered(1)
        if k == 7:
            with sqlite3.connect(db) as conn:  # what is older than this sits in the main file
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    # copy while the store is open: the newest commits exist only in the WAL, as after a power cut
    for name in ("buffer.db", "buffer.db-wal"):
        shutil.copyfile(folder / name, folder / f"template-{name}")
    store.close()


def flip(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data))
        data[at] ^= rng.randint(1, 255)


def truncate(rng: random.Random, data: bytearray) -> None:
    del data[rng.randrange(len(data)) :]


def overwrite_page(rng: random.Random, data: bytearray, *, wal: bool) -> None:
    """A whole page (of the database, or a frame's page in the WAL) zeroed or filled with noise."""
    if wal:
        frames = (len(data) - WAL_HEADER) // (FRAME_HEADER + PAGE)
        start = WAL_HEADER + rng.randrange(max(frames, 1)) * (FRAME_HEADER + PAGE) + FRAME_HEADER
    else:
        start = rng.randrange(max(len(data) // PAGE, 1)) * PAGE
    fill = bytes(PAGE) if rng.random() < 0.5 else rng.randbytes(PAGE)
    data[start : start + PAGE] = fill


def damage(rng: random.Random, folder: Path) -> str:
    """Copy the template into `folder` and damage one of its two files; the case's description."""
    folder.mkdir()
    target = rng.choice(("buffer.db", "buffer.db-wal"))
    for name in ("buffer.db", "buffer.db-wal"):
        shutil.copyfile(folder.parent / f"template-{name}", folder / name)
    data = bytearray((folder / target).read_bytes())
    how = rng.choice(("flip", "truncate", "page"))
    if how == "flip":
        flip(rng, data)
    elif how == "truncate":
        truncate(rng, data)
    else:
        overwrite_page(rng, data, wal=target.endswith("-wal"))
    (folder / target).write_bytes(bytes(data))
    return f"{how} of {target}"


def recovers(folder: Path, figures: Figures) -> None:
    """Open, accept new readings, seal and deliver them; the figures count what happened."""
    fresh = [Reading("fresh", "relative_humidity", 10**12 + i, 50.0 + i, "%") for i in range(5)]
    with Store.open(folder / "buffer.db", FAST) as store:
        figures.quarantines += store.statistics().quarantined
        store.submit(fresh)
        store.flush_blocking(5)
        found: list[float] = []
        while (pending := store.pending(limit=100_000)) is not None:
            keys = pending.series_keys
            found += [v for s, v in zip(pending.series, pending.value, strict=True) if keys[s][0] == "fresh"]
            seq = store.next_seq()
            store.seal_batch(seq, b"signed batch", pending)
        for entry in store.undelivered(limit=10_000):
            store.mark_delivered(entry.seq)
        assert sorted(found) == [r.value for r in fresh]
        assert store.statistics().outbox_rows == 0
        figures.delivered_after += len(found)


@pytest.mark.slow
def test_every_damaged_buffer_opens_or_is_quarantined_and_delivers_new_readings(tmp_path: Path) -> None:
    build_template(tmp_path)
    rng = random.Random(SEED)
    figures = Figures()
    failures: list[str] = []
    for case in range(CASES):
        folder = tmp_path / f"case{case}"
        described = damage(rng, folder)
        figures.cases += 1
        try:
            recovers(folder, figures)
        except Exception as exc:  # the sweep's whole point: any exception at all is a failure
            figures.tracebacks += 1
            failures.append(f"case {case} ({described}): {type(exc).__name__}: {exc}")
        shutil.rmtree(folder)
    print(f"\ncorruption sweep: {figures}")
    assert failures == [], "\n".join(failures[:20])
    assert figures.quarantines >= CASES // 10  # the sweep did hit corruption, not only harmless bytes
    assert figures.delivered_after == 5 * CASES


@pytest.mark.parametrize("name", ["buffer.db", "buffer.db-wal"])
def test_a_file_of_noise_beside_the_other_is_recovered(tmp_path: Path, name: str) -> None:
    build_template(tmp_path)
    folder = tmp_path / "case"
    folder.mkdir()
    for each in ("buffer.db", "buffer.db-wal"):
        shutil.copyfile(tmp_path / f"template-{each}", folder / each)
    (folder / name).write_bytes(random.Random(1).randbytes(8 * PAGE))
    figures = Figures()
    recovers(folder, figures)
    assert figures.delivered_after == 5
