"""Buffer benchmark (issue 3): ingest vs bare executemany, bytes written per reading, backlog drain.

Prints ONE JSON object as its last stdout line with the keys
ingest_per_s, bare_executemany_per_s, ingest_ratio, write_bytes_per_reading_1s,
write_bytes_per_reading_5s, drain_readings_per_s, drain_peak_rss_mb.
Details (what each number covers) go to stderr; docs/buffer.md explains them.

Run: .venv/bin/python bench/buffer_bench.py [--drain-readings N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import PendingSlice, Store, StoreOptions, chunk, schema
from gateway import wire
from kernel.model import Reading

DATA = Path("/work/shared/data/sensor-series")
if not DATA.exists():
    DATA = Path(__file__).resolve().parent.parent / "data" / "sensor-series"
FILES = ["IR-bio-temp", "Air-pressure", "PM10-dust", "Dew-point-temp", "Wind-Speed"]
SENSORS = 16
READINGS_PER_S = 100
#: the kernel's dirty_expire_centisecs (30 s) plus its flusher period (5 s)
WRITEBACK_S = 35.0
WEEK_S = 7 * 86_400
T0 = 1_780_000_000_000


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def real_values() -> np.ndarray:
    """All real sensor values of the five series, concatenated (missing ones skipped)."""
    out = []
    for name in FILES:
        path = DATA / f"{name}.csv"
        if path.exists():
            text = path.read_text().split()
            out.append(np.array([float(v) for v in text if v.strip('"')], dtype=np.float64))
    if not out:
        return np.random.default_rng(1).normal(15, 5, 100_000).round(2)
    return np.concatenate(out)


def make_readings(values: np.ndarray, count: int, per_tick: int = SENSORS) -> list[Reading]:
    """`count` readings of `per_tick` sensors at 1 Hz, values from the real series."""
    return [
        Reading(
            f"s{i % per_tick:02d}",
            FILES[i % per_tick % 5],
            T0 + (i // per_tick) * 1000,
            float(values[i % len(values)]),
            "u",
        )
        for i in range(count)
    ]


def write_bytes() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes"):
                return int(line.split()[1])
    return 0


# -- (1) ingest ----------------------------------------------------------------------------------


def bench_ingest(folder: Path, readings: list[Reading]) -> float:
    """Readings/s through submit() in lists of 100 until flush returns; 10k-row group commits."""
    options = StoreOptions(commit_interval_s=1.0, max_rows_per_commit=10_000)
    store = Store.open(folder / "ingest.db", options)
    started = time.perf_counter()
    for i in range(0, len(readings), 100):
        store.submit(readings[i : i + 100])
    store.flush_blocking(600)
    elapsed = time.perf_counter() - started
    assert store.statistics().committed == len(readings)
    store.close()
    return len(readings) / elapsed


def bench_bare_rows(folder: Path, readings: list[Reading]) -> float:
    """Bare executemany: one row per reading (series id, ts, value, quality), 10k rows per commit.

    The store's connection settings (synchronous=FULL, WAL) but SQLite's default 4 KiB pages,
    which are faster for this layout than the store's 1 KiB ones: the stricter baseline.
    """
    conn = schema.connect(folder / "bare.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE reading (series_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL,"
        " value REAL NOT NULL, quality INTEGER NOT NULL)"
    )
    ids: dict[tuple[str, str, str], int] = {}
    started = time.perf_counter()
    for i in range(0, len(readings), 10_000):
        part = readings[i : i + 10_000]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO reading VALUES (?, ?, ?, ?)",
            (
                (
                    ids.setdefault((r.sensor, r.quantity, r.unit), len(ids)),
                    r.ts_ms,
                    r.value,
                    int(r.quality),
                )
                for r in part
            ),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(readings) / elapsed


# -- (2) bytes written per reading ---------------------------------------------------------------


def bench_write_bytes(folder: Path, values: np.ndarray, per_commit: int, commits: int) -> float:
    """write_bytes per reading at `per_commit` readings per group commit (100/s x interval).

    Every commit is an fsync (synchronous=FULL), so the bytes of one commit do not depend on the
    wall-clock time between commits: the run triggers each group commit with flush instead of
    sleeping, which reproduces 100 readings/s at 1 s (5 s) commits in a few seconds. The one file
    SQLite never syncs is the mmap'ed wal-index (-shm): the kernel writes its dirty pages back
    about every WRITEBACK_S, and each write-back makes the next change count again, so the run
    syncs it once per WRITEBACK_S of simulated time, as the kernel would.
    """
    path = folder / f"wb{per_commit}.db"
    store = Store.open(path, StoreOptions(commit_interval_s=3600))
    warm = make_readings(values, per_commit * 50)
    store.submit(warm)
    store.flush_blocking(60)
    total = 0
    interval_s = per_commit / READINGS_PER_S
    writeback_every = max(1, round(WRITEBACK_S / interval_s))
    shm = os.open(f"{path}-shm", os.O_RDONLY)
    start = write_bytes()
    for k in range(commits):
        batch = make_readings(values[k * per_commit % 50_000 :], per_commit)
        store.submit(batch)
        store.flush_blocking(60)
        total += len(batch)
        if k % writeback_every == writeback_every - 1:
            os.fsync(shm)
    written = write_bytes() - start
    os.close(shm)
    store.close()
    return written / total


# -- (3) backlog drain -----------------------------------------------------------------------------


INSERT_CHUNK = "INSERT INTO chunk(n, next_ts, min_ts, max_ts, scale, data) VALUES (?,?,?,?,?,?)"


def backlog_chunk(values: np.ndarray, c: int, per_chunk: int) -> tuple[int, int, int, int, int, bytes]:
    """Row `c` of the backlog: ticks of all SENSORS at 1 Hz, series ids 1..SENSORS, real values."""
    ticks = per_chunk // SENSORS
    series = np.tile(np.arange(1, SENSORS + 1, dtype=np.int32), ticks)
    ts = T0 + (c * ticks + np.repeat(np.arange(ticks), SENSORS)) * 1000
    base = c * per_chunk % (len(values) - per_chunk)
    value = values[base : base + per_chunk]
    packed = chunk.pack(series, ts.astype(np.int64), value, np.zeros(per_chunk, np.uint16))
    return (packed.n, packed.min_ts, packed.min_ts, packed.max_ts, packed.scale, packed.data)


def check_backlog_layout(folder: Path, values: np.ndarray, per_chunk: int, chunks: int = 30) -> None:
    """The built rows are byte for byte what the store's writer commits for the same readings."""
    path = folder / "layout.db"
    with Store.open(path, StoreOptions(commit_interval_s=3600)) as store:
        for c in range(chunks):
            n, _, min_ts, _, scale, data = backlog_chunk(values, c, per_chunk)
            decoded = chunk.unpack(n, min_ts, scale, data)
            store.submit(
                [
                    Reading(f"s{sid - 1:02d}", FILES[(sid - 1) % 5], int(ts), float(v), "u")
                    for sid, ts, v in zip(decoded.series, decoded.ts_ms, decoded.value, strict=True)
                ]
            )
            store.flush_blocking(60)
    with sqlite3.connect(path) as conn:
        stored = conn.execute(
            "SELECT n, next_ts, min_ts, max_ts, scale, data FROM chunk ORDER BY id"
        ).fetchall()
    assert stored == [backlog_chunk(values, c, per_chunk) for c in range(chunks)], "backlog layout differs"


def build_backlog(path: Path, values: np.ndarray, readings: int, per_chunk: int) -> None:
    """Write a backlog as the writer would during an outage: one chunk per 1 s group commit.

    Rows as the writer packs them (check_backlog_layout proves it), but synchronous=OFF and many
    chunks per transaction, so the setup takes seconds instead of the week it simulates.
    """
    Store.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO series(id, sensor, quantity, unit) VALUES (?, ?, ?, 'u')",
        [(i + 1, f"s{i:02d}", FILES[i % 5]) for i in range(SENSORS)],
    )
    rows = []
    for c in range(readings // per_chunk):
        rows.append(backlog_chunk(values, c, per_chunk))
        if len(rows) == 50_000:
            conn.executemany(INSERT_CHUNK, rows)
            rows = []
    conn.executemany(INSERT_CHUNK, rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def encode(seq: int, pending: PendingSlice, key: Ed25519PrivateKey, kid: bytes) -> bytes:
    series = [wire.SeriesInfo(s, q, u, resolution=None) for s, q, u in pending.series_keys]
    columns = wire.ReadingColumns(
        series=pending.series, ts_ms=pending.ts_ms, value=pending.value, quality=pending.quality
    )
    body = wire.encode_batch(gateway_id="bench", seq=seq, created_ms=T0, series=series, readings=columns)
    return wire.sign(body, key, kid)


def drain(path: Path, limit: int) -> dict[str, float]:
    """pending -> encode+sign -> seal -> mark_delivered (null uplink) until nothing is left."""
    key = Ed25519PrivateKey.generate()
    kid = wire.kid_for(key.public_key())
    keyring = wire.Keyring()
    keyring.add("bench", key.public_key())
    store = Store.open(path)
    total = 0
    first_blob = b""
    spent = {"pending": 0.0, "encode": 0.0, "seal": 0.0, "deliver": 0.0}
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        pending = store.pending(upto_ts_ms=None, limit=limit)
        spent["pending"] += time.perf_counter() - t
        if pending is None:
            break
        t = time.perf_counter()
        seq = store.next_seq()
        blob = encode(seq, pending, key, kid)
        spent["encode"] += time.perf_counter() - t
        t = time.perf_counter()
        store.seal_batch(seq, blob, pending)
        spent["seal"] += time.perf_counter() - t
        t = time.perf_counter()
        for entry in store.undelivered(limit=10):
            store.mark_delivered(entry.seq)  # the null uplink acknowledges at once
        spent["deliver"] += time.perf_counter() - t
        total += len(pending)
        first_blob = first_blob or blob
    elapsed = time.perf_counter() - started
    peak_mb = peak_rss_kb() / 1024
    left = store.statistics()
    assert store.pending(limit=1) is None and not store.undelivered(limit=1), "drain left data behind"
    store.close()
    # after the measurements: the blobs are real batches that a backend verifies and decodes
    verified = len(wire.verify_and_decode(first_blob, keyring).readings)
    assert verified == min(limit, total), "the first batch does not verify with all its readings"
    return {
        "readings": total,
        "seconds": elapsed,
        "peak_rss_mb": peak_mb,
        "delivered": left.delivered,
        **spent,
    }


def peak_rss_kb() -> int:
    """VmHWM of this process's own address space.

    Not ru_maxrss: Linux carries the parent's peak over fork/exec into the child's ru_maxrss, so
    the child would report the memory of the parent that built the backlog.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -- main --------------------------------------------------------------------------------------------


def bench_drain(
    folder: Path, values: np.ndarray, readings: int, per_chunk: int, limit: int
) -> dict[str, float]:
    """Build the backlog, drain it in a fresh process (its own peak RSS), check nothing was left."""
    backlog = folder / "backlog.db"
    check_backlog_layout(folder, values, per_chunk)
    t = time.perf_counter()
    build_backlog(backlog, values, readings, per_chunk)
    log(f"backlog of {readings:,} built in {time.perf_counter() - t:.1f} s")
    child = subprocess.run(
        [sys.executable, __file__, "--drain-child", str(backlog), "--limit", str(limit)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(child.stdout.strip().splitlines()[-1])
    log("drain:", json.dumps(result))
    assert result["readings"] == result["delivered"] == readings // per_chunk * per_chunk
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drain-readings", type=int, default=SENSORS * WEEK_S)
    parser.add_argument("--per-chunk", type=int, default=SENSORS)
    parser.add_argument("--limit", type=int, help="readings per batch [the agent's batching.max_readings]")
    parser.add_argument("--ingest-readings", type=int, default=500_000)
    parser.add_argument("--drain-child", type=Path)
    args = parser.parse_args()
    if args.drain_child:
        print(json.dumps(drain(args.drain_child, args.limit)))
        return

    if args.limit is None:
        from gateway.config import BatchingConfig  # pydantic: not in the measured child's memory

        args.limit = BatchingConfig().max_readings
    values = real_values()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        folder = Path(tmp)
        readings = make_readings(values, args.ingest_readings)
        bare = bench_bare_rows(folder, readings)
        ingest = bench_ingest(folder, readings)
        log(f"ingest {ingest:,.0f}/s, bare executemany {bare:,.0f}/s")
        del readings
        wb1 = bench_write_bytes(folder, values, 100, 3000)
        wb5 = bench_write_bytes(folder, values, 500, 800)
        log(f"write bytes per reading: 1 s commits {wb1:.1f}, 5 s commits {wb5:.1f}")
        result = bench_drain(folder, values, args.drain_readings, args.per_chunk, args.limit)
    print(
        json.dumps(
            {
                "ingest_per_s": round(ingest),
                "bare_executemany_per_s": round(bare),
                "ingest_ratio": round(ingest / bare, 3),
                "write_bytes_per_reading_1s": round(wb1, 1),
                "write_bytes_per_reading_5s": round(wb5, 1),
                "drain_readings_per_s": round(result["readings"] / result["seconds"]),
                "drain_peak_rss_mb": round(result["peak_rss_mb"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
