"""kill -9 of receivers in the middle of group commits into PostgreSQL: every batch stored exactly once.

Three receiver processes (pg_store_driver.py: the PostgreSQL store plus acknowledge-after-commit, without
the MQTT transport) get every unacknowledged batch, each in its own order, as after a redelivery storm.
Each round one of them kills itself with SIGKILL inside a group commit (its readings written, COMMIT not
yet sent), the two others are killed with SIGKILL at a random moment, and what none acknowledged is
delivered again.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from hil.fleet import SimulatedGateway
from hil.postgres import PostgresCluster

DRIVER = Path(__file__).with_name("pg_store_driver.py")
ROUNDS_WITH_KILLS = 3


def acknowledged(ack_file: Path) -> dict[int, str]:
    """Batch index -> outcome of every whole ack line (a kill cannot leave half a line)."""
    acks: dict[int, str] = {}
    for line in ack_file.read_text().splitlines():
        for item in line.split():
            index, outcome = item.split(":")
            acks[int(index)] = outcome
    return acks


def run_round(dsn: str, queue: Path, ack_file: Path, seed: int, kill_after_s: float | None) -> None:
    """Three receivers on the queue: the first dies inside its first group commit, the others are killed
    `kill_after_s` after the round's first acknowledgement (start-up takes as long as the machine's load
    makes it); with None all are left to finish."""
    acked_before = ack_file.stat().st_size
    receivers = [
        subprocess.Popen(
            [
                sys.executable,
                str(DRIVER),
                dsn,
                str(queue),
                str(ack_file),
                f"{seed}-{i}",
                "1" if kill_after_s is not None and i == 0 else "0",
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    try:
        if kill_after_s is not None:
            deadline = time.monotonic() + 60
            while ack_file.stat().st_size == acked_before and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(kill_after_s)
            for receiver in receivers[1:]:  # the first one kills itself inside its first group commit
                receiver.send_signal(signal.SIGKILL)
        for i, receiver in enumerate(receivers):
            _, stderr = receiver.communicate(timeout=120)
            if kill_after_s is None:
                assert receiver.returncode == 0, stderr
            else:  # the others may have finished before their kill
                allowed = (-signal.SIGKILL,) if i == 0 else (0, -signal.SIGKILL)
                assert receiver.returncode in allowed, stderr
    finally:
        for receiver in receivers:
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait()


@pytest.mark.slow
def test_receivers_killed_mid_commit_store_every_batch_exactly_once(
    tmp_path: Path, postgres_cluster: PostgresCluster, fresh_dsn: str
) -> None:
    gateways = [SimulatedGateway(f"gw-{i}", series=20) for i in range(4)]
    blobs = [g.batch(5) for _ in range(30) for g in gateways]
    keys = {g.gateway_id: g.public_raw.hex() for g in gateways}
    ack_file = tmp_path / "acks"
    ack_file.touch()
    log_before = len(postgres_cluster.log_tail(10**9))
    rng = random.Random(12)
    kill_rounds = 0
    for round_ in range(ROUNDS_WITH_KILLS + 1):
        acks = acknowledged(ack_file)
        pending = {i: blob.hex() for i, blob in enumerate(blobs) if i not in acks}
        if not pending:
            break
        queue = tmp_path / f"queue-{round_}.json"
        queue.write_text(json.dumps({"keys": keys, "batches": pending}))
        kill_after_s = rng.uniform(0.0, 0.3) if round_ < ROUNDS_WITH_KILLS else None
        kill_rounds += kill_after_s is not None
        run_round(fresh_dsn, queue, ack_file, round_, kill_after_s)
    acks = acknowledged(ack_file)
    assert sorted(acks) == list(range(len(blobs)))
    assert set(acks.values()) <= {"stored", "duplicate"}
    with psycopg.connect(fresh_dsn) as conn:
        stored = conn.execute(
            "SELECT count(*), count(DISTINCT (gateway_id, epoch, seq)) FROM batches"
        ).fetchall()
        readings = conn.execute(
            "SELECT count(*), count(DISTINCT (gateway_id, sensor, ts_ms)) FROM readings"
        ).fetchall()
    assert stored == [(120, 120)]
    assert readings == [(12_000, 12_000)]
    # the killed receivers left open transactions behind, which PostgreSQL rolled back
    server_log = postgres_cluster.log_tail(10**9)[log_before:]
    # (a socket closed with unread bytes in it is reset rather than closed, hence two messages)
    lost_clients = server_log.count("unexpected EOF on client connection with an open transaction")
    lost_clients += server_log.count("could not receive data from client: Connection reset by peer")
    assert kill_rounds >= 1
    assert lost_clients >= kill_rounds
