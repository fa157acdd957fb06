"""The receiver's PostgreSQL store (issue 12): group commits from one and from three store processes
against bare binary COPY of the same rows, on a private durable cluster (fsync and synchronous_commit on).

500 simulated gateways x 20 series, 5 s slices at 1 Hz = 100 readings per batch, verified before the
clock starts; each gateway's first batch is stored before it too (series registered: the steady state).
Each store process commits its share in groups of `--group` batches (the receiver's group commit). pg_3
gives each process a disjoint third, as a shared subscription does.

Prints ONE JSON object as its last stdout line with the keys
batches_per_s_pg_1, batches_per_s_pg_3, copy_batches_per_s (the baseline: the same reading rows by
bare binary COPY into an unindexed table, one transaction per group), pg_1_vs_copy, pg_3_vs_copy,
store_cpu_us_per_reading (the store process's own CPU, pg_1), lost, duplicates (over both runs).

Run: .venv/bin/python bench/receiver_pg_bench.py [--seqs N] [--group N]

`postgres_runs` is the PostgreSQL half of bench/receiver_bench.py (whole receivers over Mosquitto):
that benchmark passes it a function draining its published batches with N receivers on a DSN.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier

import numpy as np
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway import wire
from gateway.receiver.postgres import PostgresStore
from gateway.receiver.postgres.copy_stream import binary_copy
from gateway.receiver.store import VerifiedBatch
from hil.fleet import SimulatedGateway
from hil.postgres import PostgresCluster

GATEWAYS = 500


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def make_work(seqs: int) -> tuple[list[bytes], dict[str, bytes]]:
    """Signed batches, seq-major (as gateways upload in step), and each gateway's raw public key; as the
    agent sends them, a gateway's first batch declares its series catalogue and the later ones refer
    to it (docs/wire-format.md 3.5)."""
    gateways = [SimulatedGateway(f"gw-{i:03d}", series=20) for i in range(GATEWAYS)]
    blobs = [g.batch(5, refer=n > 0) for n in range(seqs) for g in gateways]
    return blobs, {g.gateway_id: g.public_raw for g in gateways}


def verify_all(
    blobs: list[bytes], keys: dict[str, bytes], declaring: list[bytes] | None = None
) -> list[VerifiedBatch]:
    """The batches verified and decoded, their catalogues learned from `declaring` (each gateway's
    first batch, when not among `blobs`) and from the batches in order."""
    keyring = wire.Keyring()
    for gateway_id, raw in keys.items():
        keyring.add(gateway_id, Ed25519PublicKey.from_public_bytes(raw))
    known = wire.KnownCatalogues()
    for blob in declaring or []:
        known.learn(wire.verify_and_decode(blob, keyring))
    return [VerifiedBatch(known.learn(wire.verify_and_decode(b, keyring, known.lookup)), b, 0) for b in blobs]


def store_process(
    dsn: str,
    blobs: list[bytes],
    declaring: list[bytes],
    keys: dict[str, bytes],
    group: int,
    start: Barrier,
    out: multiprocessing.Queue[tuple[float, float, float]],
) -> None:
    """One receiver's store: verify (untimed), wait for the others, commit in groups."""
    items = verify_all(blobs, keys, declaring)
    store = PostgresStore(dsn)
    start.wait()
    began, cpu = time.monotonic(), time.process_time()
    for i in range(0, len(items), group):
        store.commit(items[i : i + group])
    out.put((began, time.monotonic(), time.process_time() - cpu))
    store.close()


def run_stores(
    cluster: PostgresCluster,
    name: str,
    warm_up: list[bytes],
    shares: list[list[bytes]],
    keys: dict[str, bytes],
    group: int,
) -> tuple[float, float]:
    """Batches per second over the wall time of all processes, and their CPU per reading. `warm_up` is
    stored before the clock starts: the schema migrated and every series registered, as in a city whose
    receivers have run before (registering 10,000 series is a one-off cost, not the steady state)."""
    dsn = cluster.create_database(name)
    store = PostgresStore(dsn)
    items = verify_all(warm_up, keys)
    for i in range(0, len(items), group):
        store.commit(items[i : i + group])
    store.close()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(shares))
    out: multiprocessing.Queue[tuple[float, float, float]] = context.Queue()
    processes = [
        context.Process(target=store_process, args=(dsn, s, warm_up, keys, group, start, out)) for s in shares
    ]
    for p in processes:
        p.start()
    results = [out.get(timeout=600) for _ in processes]
    for p in processes:
        p.join()
    batches = sum(len(s) for s in shares)
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    return batches / elapsed, sum(r[2] for r in results) / (batches * 100) * 1e6


def check(cluster: PostgresCluster, name: str, expected: int) -> tuple[int, int]:
    """(lost, duplicates): batches missing, and readings stored more than once."""
    with psycopg.connect(cluster.dsn_of(name)) as conn:
        row = conn.execute("SELECT count(*) FROM batches").fetchone()
        stored = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT count(*) - count(DISTINCT (series_id, ts_ms)) FROM reading_rows"
        ).fetchone()
        return expected - stored, int(row[0]) if row else 0


def bare_copy(cluster: PostgresCluster, blobs: list[bytes], keys: dict[str, bytes], group: int) -> float:
    """The baseline: the same reading rows by binary COPY, one transaction per group, no claims."""
    items = verify_all(blobs, keys)
    dsn = cluster.create_database("baseline")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE rows (series_id integer, ts_ms bigint, value float8, quality integer, batch_id bigint)"
        )
        began = time.monotonic()
        for i in range(0, len(items), group):
            chunk = [item.batch.readings for item in items[i : i + group]]
            stream = binary_copy([
                np.concatenate([r.series for r in chunk]).astype(np.int32),
                np.concatenate([r.ts_ms for r in chunk]),
                np.concatenate([r.value for r in chunk]),
                np.concatenate([r.quality for r in chunk]).astype(np.int32),
                np.repeat(np.arange(i, i + len(chunk), dtype=np.int64), [len(r) for r in chunk]),
            ])  # fmt: skip
            with conn.transaction(), conn.cursor().copy("COPY rows FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(stream)
        return len(items) / (time.monotonic() - began)


def postgres_runs(drain: Callable[[str, int, Callable[[], int]], float], published: int) -> dict[str, object]:
    """The PostgreSQL half of bench/receiver_bench.py: `drain(dsn, receivers, stored)` runs that many
    `gateway receiver --db DSN` processes over everything published and returns their batches/s; here a
    private durable cluster, one fresh database per run, and the lost and duplicates of both runs."""
    result: dict[str, object] = {}
    lost = duplicates = 0
    with PostgresCluster() as cluster:
        for receivers in (1, 3):
            name = f"receivers_{receivers}"
            dsn = cluster.create_database(name)
            PostgresStore(dsn).close()  # migrated before the clock starts

            def stored(dsn: str = dsn) -> int:
                with psycopg.connect(dsn) as conn:
                    row = conn.execute("SELECT count(*) FROM batches").fetchone()
                return int(row[0]) if row else 0

            result[f"batches_per_s_pg_{receivers}"] = round(drain(dsn, receivers, stored), 1)
            missing, repeated = check(cluster, name, published)
            lost, duplicates = lost + missing, duplicates + repeated
    return {**result, "lost_pg": lost, "duplicates_pg": duplicates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", type=int, default=12, help="batches per gateway (500 gateways)")
    parser.add_argument("--group", type=int, default=50, help="batches per group commit")
    args = parser.parse_args()
    blobs, keys = make_work(args.seqs)
    log(f"{len(blobs)} batches of 100 readings, {args.group} per transaction")
    with PostgresCluster() as cluster:
        copy_rate = bare_copy(cluster, blobs, keys, args.group)
        log(f"bare binary COPY: {copy_rate:.0f} batches/s ({copy_rate * 100:.0f} rows/s)")
        warm_up, measured = blobs[:GATEWAYS], blobs[GATEWAYS:]  # each gateway's first batch
        pg_1, cpu = run_stores(cluster, "pg_1", warm_up, [measured], keys, args.group)
        log(f"one store process: {pg_1:.0f} batches/s, {cpu:.2f} us of its CPU per reading")
        pg_3, _ = run_stores(cluster, "pg_3", warm_up, [measured[i::3] for i in range(3)], keys, args.group)
        log(f"three store processes: {pg_3:.0f} batches/s")
        losses = [check(cluster, name, len(blobs)) for name in ("pg_1", "pg_3")]
    result = {
        "batches_per_s_pg_1": round(pg_1),
        "batches_per_s_pg_3": round(pg_3),
        "copy_batches_per_s": round(copy_rate),
        "pg_1_vs_copy": round(pg_1 / copy_rate, 3),
        "pg_3_vs_copy": round(pg_3 / copy_rate, 3),
        "store_cpu_us_per_reading": round(cpu, 2),
        "lost": sum(lost for lost, _ in losses),
        "duplicates": sum(dup for _, dup in losses),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
