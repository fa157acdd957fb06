"""Benchmark of the receiver: 500 simulated gateways x 20 series, 100 readings per batch, over a
local Mosquitto (issue 12). Everything runs on this machine, receivers as child processes.

The batches are signed beforehand, published QoS 1 as fast as the publisher can into the receivers'
persistent session while no receiver runs, then the receivers start and drain the session: the
throughput is batches stored / seconds from start to the last commit, so the publisher's speed does
not limit it. Prints one JSON object as the last line:

- batches_per_s_sqlite: one receiver, SQLite store (target >= 1,000)
- batches_per_s_pg_1, batches_per_s_pg_3: one and three receivers (shared subscription) on the
  PostgreSQL store; null unless that store is importable and `pg_ctl` is installed
- receiver_cpu_us_per_reading: CPU time (user + system) of the SQLite receiver process per stored
  reading, verification, decoding, row building and SQLite included (target <= 6)
- lost: published batches missing from the store (must be 0); duplicates: readings stored more than
  once (must be 0); both summed over every run, the PostgreSQL runs' share also as lost_pg and
  duplicates_pg
- baseline_publish_batches_per_s: how fast this machine's publisher filled the broker (context)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hil.broker import Mosquitto
from hil.fleet import SimulatedGateway, publish_all, topic_of, write_public_keys

GATEWAYS, SERIES, PER_SERIES = 500, 20, 5  # 5 s slices at 1 Hz: 100 readings per batch
BATCHES_EACH = int(os.environ.get("RECEIVER_BENCH_BATCHES_EACH", "16"))  # 8,000 batches in all
#: a larger in-flight window than Mosquitto's default 20: more batches per group commit
MAX_INFLIGHT = 100


def make_messages(gateways: list[SimulatedGateway]) -> list[tuple[str, bytes]]:
    """Every gateway's batches, interleaved as a city's would arrive: as the agent sends them, the
    first declares its series catalogue and the later ones refer to it (docs/wire-format.md 3.5; the
    agent declares again every 96th batch, beyond this run's 16)."""
    return [
        (topic_of(gw.gateway_id), gw.batch(PER_SERIES, refer=n > 0))
        for n in range(BATCHES_EACH)
        for gw in gateways
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count(db: Path, query: str) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def receiver(work: Path, port: int, db: str, client_id: str, *extra: str) -> subprocess.Popen[bytes]:
    log = (work / f"{client_id}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "receiver", "--broker", f"127.0.0.1:{port}", "--db", db,
         "--client-id", client_id, "--log-level", "error", *extra],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def subscribe_once(
    work: Path, port: int, db: str, keys: Path, client_ids: list[str], extra: list[str]
) -> None:
    """Create the receivers' persistent sessions (subscribed), then stop them."""
    for client_id in client_ids:
        stats = work / f"{client_id}.json"
        # the first start imports the 500 keys into the registry; the measured runs start without
        child = receiver(work, port, db, client_id, "--keys", str(keys), "--stats-file", str(stats), *extra)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _connected(stats):
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)


def _connected(stats: Path) -> bool:
    try:
        return bool(json.loads(stats.read_text()).get("connected"))
    except (OSError, ValueError):
        return False


def drain(
    work: Path,
    broker: Mosquitto,
    db: str,
    keys: Path,
    messages: list[tuple[str, bytes]],
    receivers: int,
    stored: Callable[[], int],
) -> tuple[float, float, float]:
    """Publish into stopped receivers' sessions, start them, wait until all is stored;
    (batches per second, CPU seconds of the receivers, publish batches per second)."""
    ids = [f"bench-{i}" for i in range(receivers)]
    extra = ["--share-group", "bench"] if receivers > 1 else []
    subscribe_once(work, broker.port, db, keys, ids, extra)
    started = time.monotonic()
    asyncio.run(publish_all(broker.port, messages, client_id="bench-fleet", window=200))
    publish_rate = len(messages) / (time.monotonic() - started)
    started = time.monotonic()
    children = [receiver(work, broker.port, db, i, *extra) for i in ids]
    cpu = [0.0] * receivers
    while stored() < len(messages) and time.monotonic() - started < 180:
        cpu = [cpu_seconds(c.pid) for c in children]
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    cpu = [max(a, cpu_seconds(c.pid)) for a, c in zip(cpu, children, strict=True)]
    for child in children:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    return stored() / elapsed, sum(cpu), publish_rate


def sqlite_run(work: Path, messages: list[tuple[str, bytes]], keys: Path) -> dict[str, object]:
    db = work / "received.db"
    with Mosquitto(work / "broker-sqlite", max_inflight=MAX_INFLIGHT) as broker:
        rate, cpu, publish_rate = drain(
            work, broker, str(db), keys, messages, 1, lambda: count(db, "SELECT count(*) FROM batches")
        )
    readings = count(db, "SELECT count(*) FROM readings")
    distinct = count(
        db, "SELECT count(*) FROM (SELECT DISTINCT gateway_id, epoch, seq, sensor, ts_ms FROM readings)"
    )
    return {
        "batches_per_s_sqlite": round(rate, 1),
        "receiver_cpu_us_per_reading": round(cpu / max(readings, 1) * 1e6, 2),
        "lost": len(messages) - count(db, "SELECT count(*) FROM batches"),
        "duplicates": readings - distinct,
        "baseline_publish_batches_per_s": round(publish_rate, 1),
    }


def postgres_available() -> bool:
    """Whether the PostgreSQL store and a server to run it are here (filled in by the PostgreSQL work)."""
    try:
        __import__("gateway.receiver.postgres")
    except ImportError:
        return False
    return shutil.which("pg_ctl") is not None


def main() -> None:
    gateways = [SimulatedGateway(f"gw-{i:03d}", series=SERIES) for i in range(GATEWAYS)]
    with tempfile.TemporaryDirectory(prefix="receiver-bench-") as tmp:
        work = Path(tmp)
        keys = write_public_keys(work / "keys", gateways)
        messages = make_messages(gateways)
        result: dict[str, object] = {
            "gateways": GATEWAYS, "series_per_gateway": SERIES, "readings_per_batch": SERIES * PER_SERIES,
            "batches": len(messages),
        }  # fmt: skip
        result.update(sqlite_run(work, messages, keys))
        result.update(postgres_run(work, messages, keys))
        for key in ("lost", "duplicates"):  # every run's, SQLite and PostgreSQL
            result[key] = int(result[key]) + int(result.get(f"{key}_pg", 0))  # type: ignore[call-overload]
    print(json.dumps(result))


def postgres_run(work: Path, messages: list[tuple[str, bytes]], keys: Path) -> dict[str, object]:
    """batches_per_s_pg_1 and _3 through whole receivers on a private PostgreSQL cluster (a fresh
    broker and database per run); their losses and duplicates are added to `lost` and `duplicates`
    by `main` and also reported apart as lost_pg and duplicates_pg."""
    if not postgres_available():
        return {"batches_per_s_pg_1": None, "batches_per_s_pg_3": None, "postgres": False}
    from receiver_pg_bench import postgres_runs  # needs psycopg: imported only when it is there

    def pg_drain(db: str, receivers: int, stored: Callable[[], int]) -> float:
        with Mosquitto(work / f"broker-pg-{receivers}", max_inflight=MAX_INFLIGHT) as broker:
            return drain(work, broker, db, keys, messages, receivers, stored)[0]

    return {"postgres": True, **postgres_runs(pg_drain, len(messages))}


if __name__ == "__main__":
    main()
