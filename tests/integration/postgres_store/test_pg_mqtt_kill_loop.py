"""Three `gateway receiver` processes on a shared subscription of a real Mosquitto, storing into one real
PostgreSQL: members killed with SIGKILL under load and restarted, every published batch stored once."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

pytest.importorskip("gateway.receiver.mqtt", reason="needs the receiver's MQTT transport (issue 12)")

from conftest import Processes, read_json, wait_until

from hil.broker import Mosquitto
from hil.fleet import SimulatedGateway, publish_all, topic_of, write_public_keys
from hil.postgres import PostgresCluster

GATEWAYS, BATCHES_EACH, SERIES, PER_SERIES = 20, 40, 5, 20  # 800 batches of 100 readings
KILLS = 3


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query.encode()).fetchone()
    return int(row[0]) if row else 0


def start(
    processes: Processes, broker: Mosquitto, keys: Path, dsn: str, name: str, run: int
) -> tuple[subprocess.Popen[str], Path]:
    stats = processes.workdir / f"{name}-{run}.json"
    child = processes.start(
        f"{name}-{run}", "-m", "gateway", "receiver", "--broker", f"127.0.0.1:{broker.port}",
        "--keys", str(keys), "--db", dsn, "--client-id", name, "--share-group", "city",
        "--stats-file", str(stats), "--log-level", "warning",
    )  # fmt: skip
    wait_until(lambda: read_json(stats).get("connected") is True, 30, f"receiver {name} subscribed")
    return child, stats


@pytest.mark.slow
def test_receivers_on_postgresql_killed_under_load_store_every_batch_once(
    broker: Mosquitto, processes: Processes, postgres_cluster: PostgresCluster, fresh_dsn: str
) -> None:
    gateways = [SimulatedGateway(f"gw-{i}", series=SERIES) for i in range(GATEWAYS)]
    keys = write_public_keys(processes.workdir / "keys", gateways)
    members = {name: start(processes, broker, keys, fresh_dsn, name, 0)[0] for name in ("r1", "r2", "r3")}
    messages = [(topic_of(g.gateway_id), g.batch(PER_SERIES)) for _ in range(BATCHES_EACH) for g in gateways]
    assert asyncio.run(publish_all(broker.port, messages)) == len(messages)

    def stored() -> int:
        return count(fresh_dsn, "SELECT count(*) FROM batches")

    rng = random.Random(7)
    kills = 0
    for run in range(1, KILLS + 1):
        before = stored()
        if before == len(messages):
            break
        wait_until(lambda: stored() > before, 60, "the next group commit")  # noqa: B023
        name = rng.choice(sorted(members))
        members[name].send_signal(signal.SIGKILL)  # mid-commit or between commit and PUBACK
        members[name].wait()
        kills += 1
        members[name] = start(processes, broker, keys, fresh_dsn, name, run)[0]
    wait_until(lambda: stored() >= len(messages), 120, "every batch stored")
    for child in members.values():
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
    assert kills >= 1
    assert count(fresh_dsn, "SELECT count(DISTINCT (gateway_id, epoch, seq)) FROM batches") == len(messages)
    assert stored() == len(messages)
    assert count(fresh_dsn, "SELECT count(*) FROM readings") == len(messages) * SERIES * PER_SERIES
