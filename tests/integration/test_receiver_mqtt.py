"""The receiver over a real Mosquitto: acknowledged only after the commit, so kill -9 loses nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from conftest import Processes, read_json, start_receiver, wait_until
from test_skeleton_path import start_station, station_total, write_config

from gateway.receiver import (
    BatchSubscriber,
    BrokerSettings,
    Committer,
    Outcome,
    QuarantineEntry,
    ReceiverCore,
    RegisteredKey,
    SqliteStore,
    VerifiedBatch,
)
from hil.broker import Mosquitto, free_port
from hil.fleet import SimulatedGateway, publish_all, topic_of, write_public_keys
from hil.tls import loopback_certificate
from kernel.errors import StorageError

GATEWAYS, BATCHES_EACH, SERIES, PER_SERIES = 20, 40, 5, 20  # 800 batches of 100 readings


def stored(db: Path, query: str = "SELECT count(*) FROM batches") -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def fleet_messages(gateways: list[SimulatedGateway]) -> list[tuple[str, bytes]]:
    return [(topic_of(gw.gateway_id), gw.batch(PER_SERIES)) for _ in range(BATCHES_EACH) for gw in gateways]


def settle(count: Callable[[], int], *, until: int, quiet_s: float, first: bool = False) -> bool:
    """Wait until `count` reaches `until` or stops changing for `quiet_s` (or, with `first`, changes
    once); True when it changed and has not reached `until`."""
    last, changed_at, start = count(), time.monotonic(), count()
    while last < until and time.monotonic() - changed_at < quiet_s:
        time.sleep(0.05)
        now = count()
        if now != last:
            last, changed_at = now, time.monotonic()
            if first:
                break
    return start != last and last < until


class Receivers:
    """`gateway receiver` children on one broker and one database."""

    def __init__(self, tmp_path: Path, processes: Processes, broker: Mosquitto, keys: Path) -> None:
        self.tmp_path, self.processes, self.broker, self.keys = tmp_path, processes, broker, keys
        self.db = tmp_path / "received.db"
        self.started = 0

    def start(self, client_id: str, *extra: str) -> tuple[subprocess.Popen[str], Path]:
        self.started += 1
        stats = self.tmp_path / f"{client_id}-{self.started}.json"
        child = self.processes.start(
            f"{client_id}-{self.started}", "-m", "gateway", "receiver",
            "--broker", f"127.0.0.1:{self.broker.port}", "--keys", str(self.keys), "--db", str(self.db),
            "--client-id", client_id, "--stats-file", str(stats), "--log-level", "warning", *extra,
        )  # fmt: skip
        wait_until(lambda: read_json(stats).get("connected") is True, 30, f"receiver {client_id} subscribed")
        return child, stats


def assert_each_batch_stored_once(db: Path, total: int) -> None:
    assert stored(db) == total
    assert stored(db, "SELECT count(DISTINCT gateway_id || ':' || seq) FROM batches") == total
    assert stored(db, "SELECT count(*) FROM readings") == total * SERIES * PER_SERIES


@pytest.mark.slow
def test_kill_9_of_the_receiver_under_load_loses_and_duplicates_no_batch(
    tmp_path: Path, broker: Mosquitto, processes: Processes
) -> None:
    gateways = [SimulatedGateway(f"gw-{i}", series=SERIES) for i in range(GATEWAYS)]
    receivers = Receivers(tmp_path, processes, broker, write_public_keys(tmp_path / "keys", gateways))
    child, _ = receivers.start("receiver")  # the persistent session exists from now on
    messages = fleet_messages(gateways)
    assert asyncio.run(publish_all(broker.port, messages)) == len(messages)
    kills = 0
    while kills < 5 and settle(lambda: stored(receivers.db), until=len(messages), quiet_s=3.0, first=True):
        child.send_signal(signal.SIGKILL)  # mid-commit or between commit and PUBACK, wherever it is
        child.wait()
        kills += 1
        child, _ = receivers.start("receiver")
    settle(lambda: stored(receivers.db), until=len(messages), quiet_s=5.0)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=15) == 0
    assert kills >= 1
    assert_each_batch_stored_once(receivers.db, len(messages))


@pytest.mark.slow
def test_three_receivers_share_the_load_and_a_killed_ones_batches_wait_for_it_in_its_session(
    tmp_path: Path, broker: Mosquitto, processes: Processes
) -> None:
    gateways = [SimulatedGateway(f"gw-{i}", series=SERIES) for i in range(GATEWAYS)]
    receivers = Receivers(tmp_path, processes, broker, write_public_keys(tmp_path / "keys", gateways))
    group = ("--share-group", "city")
    children = {name: receivers.start(name, *group) for name in ("r1", "r2", "r3")}
    messages = fleet_messages(gateways)
    assert asyncio.run(publish_all(broker.port, messages)) == len(messages)
    wait_until(lambda: stored(receivers.db) > 0, 30, "the first commit")
    victim, _ = children["r2"]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    settle(lambda: stored(receivers.db), until=len(messages), quiet_s=3.0)
    # Mosquitto 2.x does not hand r2's share to r1 or r3: it waits in r2's session
    waiting = len(messages) - stored(receivers.db)
    assert waiting > 0
    survivors = {name: read_json(stats) for name, (_, stats) in children.items() if name != "r2"}
    assert all(s["groups"] > 0 for s in survivors.values())  # both took part
    children["r2"] = receivers.start("r2", *group)
    settle(lambda: stored(receivers.db), until=len(messages), quiet_s=5.0)
    for child, _ in children.values():
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
    assert_each_batch_stored_once(receivers.db, len(messages))
    print(f"{waiting} of {len(messages)} batches waited for the killed member")


@pytest.mark.slow
def test_a_key_rotation_the_backend_was_not_told_of_loses_nothing(
    tmp_path: Path, processes: Processes
) -> None:
    link = tmp_path / "ttyWEATHER"
    station = start_station(processes, link, rate=10)
    port = free_port()
    config, receiver_keys = write_config(tmp_path, port, link)
    db, stats_file = tmp_path / "received.db", tmp_path / "receiver.json"
    with Mosquitto(tmp_path / "broker", port=port):
        start_receiver(processes, port, receiver_keys, db, stats_file)
        agent = processes.start("agent-1", "-m", "gateway", "run", "--config", str(config))
        wait_until(lambda: read_json(stats_file).get("readings_stored", 0) > 0, 30, "the first batch")
        rotated = subprocess.run(
            [sys.executable, "-m", "gateway", "keys", "rotate", "--dir", str(tmp_path / "keys"), "--json"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        new_kid = json.loads(rotated.stdout)["kid"]
        agent.send_signal(signal.SIGTERM)  # restarted with the new key; nobody told the backend
        assert agent.wait(timeout=10) == 0
        agent = processes.start("agent-2", "-m", "gateway", "run", "--config", str(config))
        wait_until(lambda: read_json(stats_file).get("keys_enrolled", 0) == 1, 30, "the rollover")
        time.sleep(1.5)
        produced = station_total(station)
        wait_until(lambda: read_json(stats_file).get("readings_stored", 0) >= produced, 30, "every reading")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
    assert stored(db, "SELECT count(*) FROM readings") == produced
    assert stored(db, "SELECT count(*) FROM quarantine") == 0
    assert (
        stored(db, f"SELECT count(*) FROM keys WHERE hex(kid) = upper('{new_kid}') AND source = 'rollover'")
        == 1
    )
    assert not (tmp_path / "keys" / "rollover.pending").exists()


@pytest.mark.slow
def test_the_receiver_subscribes_over_tls_with_a_user_name_and_password_file(
    tmp_path: Path, processes: Processes
) -> None:
    cert = loopback_certificate(tmp_path / "tls")
    gw = SimulatedGateway("gw-1")
    keys = write_public_keys(tmp_path / "keys", [gw])
    users = {"receiver": "s3cret receiver", "gw-1": "gw secret"}
    (tmp_path / "password").write_text(users["receiver"] + "\n")
    with Mosquitto(tmp_path / "broker", tls=cert, users=users) as broker:
        db, stats = tmp_path / "received.db", tmp_path / "stats.json"
        processes.start(
            "receiver", "-m", "gateway", "receiver", "--broker", f"127.0.0.1:{broker.tls_port}",
            "--keys", str(keys), "--db", str(db), "--stats-file", str(stats),
            "--mqtt-ca", str(cert.ca_file), "--mqtt-username", "receiver",
            "--mqtt-password-file", str(tmp_path / "password"),
        )  # fmt: skip
        wait_until(lambda: read_json(stats).get("connected") is True, 30, "the receiver over TLS")
        tls = ssl.create_default_context(cafile=str(cert.ca_file))
        messages = [(topic_of("gw-1"), gw.batch()) for _ in range(5)]
        asyncio.run(publish_all(broker.tls_port or 0, messages, tls=tls, credentials=("gw-1", users["gw-1"])))
        wait_until(lambda: stored(db) == 5, 30, "the batches over TLS")


class FailingFirstCommits(SqliteStore):
    """A SQLite store whose first `failures` group commits fail, as a full disk would."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def commit(
        self,
        batches: Sequence[VerifiedBatch],
        quarantine: Sequence[QuarantineEntry] = (),
        release: Sequence[int] = (),
    ) -> list[Outcome]:
        if batches and self.failures > 0:
            self.failures -= 1
            raise StorageError("disk full")
        return super().commit(batches, quarantine, release)


@pytest.mark.parametrize("overlap", [True, False], ids=["judging-beside-commits", "one-group-at-a-time"])
async def test_a_failed_commit_acknowledges_nothing_and_the_broker_sends_the_batches_again(
    tmp_path: Path, broker: Mosquitto, overlap: bool
) -> None:
    gw = SimulatedGateway("gw-1")
    store = FailingFirstCommits(tmp_path / "received.db", failures=2)
    core = ReceiverCore(store)
    core.enrol(RegisteredKey(gw.kid, gw.gateway_id, gw.public_raw, 0, "cli"))
    committer = Committer(core, overlap=overlap)
    subscriber = BatchSubscriber(
        committer, BrokerSettings("127.0.0.1", broker.port, client_id="r"), clock=lambda: 1
    )
    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(committer.run()), tasks.create_task(subscriber.run())]
        async with asyncio.timeout(30):
            while not subscriber.connected:
                await asyncio.sleep(0.02)
            await publish_all(broker.port, [(topic_of("gw-1"), gw.batch()) for _ in range(10)])
            while store.count_readings() < 50 or subscriber.acknowledged < 10:
                await asyncio.sleep(0.05)
        for task in running:
            task.cancel()
    assert store.failures == 0
    assert store.count_readings() == 50
    assert stored(tmp_path / "received.db") == 10


async def session(
    core: ReceiverCore, port: int, publish: list[tuple[str, bytes]], until: Callable[[], bool]
) -> int:
    """One receiver session (client id "r", persistent): publish, run until `until()`, stop; how
    many messages it acknowledged."""
    committer = Committer(core)
    subscriber = BatchSubscriber(committer, BrokerSettings("127.0.0.1", port, client_id="r"), clock=lambda: 1)
    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(committer.run()), tasks.create_task(subscriber.run())]
        async with asyncio.timeout(30):
            while not subscriber.connected:
                await asyncio.sleep(0.02)
            await publish_all(port, publish)
            while not until():
                await asyncio.sleep(0.05)
        for task in running:
            task.cancel()
    return subscriber.acknowledged


async def test_acknowledged_batches_reach_the_broker_and_are_not_sent_again(
    tmp_path: Path, broker: Mosquitto
) -> None:
    gw = SimulatedGateway("gw-1")
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    core.enrol(RegisteredKey(gw.kid, gw.gateway_id, gw.public_raw, 0, "cli"))
    first = [(topic_of("gw-1"), gw.batch()) for _ in range(30)]
    assert await session(core, broker.port, first, lambda: core.statistics().batches_stored == 30) == 30
    # the same persistent session again: a message whose PUBACK never reached the broker would come
    # again (before the new one) and be dropped as a duplicate
    probe = [(topic_of("gw-1"), gw.batch())]
    await session(core, broker.port, probe, lambda: core.statistics().batches_stored == 31)
    assert core.statistics().duplicates_dropped == 0
    assert stored(tmp_path / "received.db") == 31
