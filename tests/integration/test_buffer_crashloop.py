"""Crash loop: an agent ingesting, batching and delivering to a real Mosquitto is SIGKILLed 50+ times.

Half the kills land at a random moment after launch (start-up, opening, schema creation), half at
a random moment after the agent's first commit (ingest, seal, publish, acknowledgement), so the
mix does not depend on how fast the machine starts Python.

After every kill the database passes PRAGMA integrity_check and every outbox row is a whole,
verifiable batch. At the end a last run drains the backlog, and the reference receiver (`gateway
receiver`, subscribed the whole time) holds every reading the agent ever confirmed as committed
exactly once in its database.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import wire
from hil.broker import Mosquitto

KILLS = 52
TOPIC = "crashloop/batches"
T0 = 1_700_000_000_000
RUN_SPAN = 1_000_000  # reading numbers of run k: k * RUN_SPAN + ...

AGENT = r'''
"""A minimal agent: produce -> Store -> seal (gateway.wire) -> publish QoS 1 -> mark_delivered."""
import asyncio, sys, time
from pathlib import Path

import aiomqtt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from buffer import Store, StoreOptions
from gateway import wire
from kernel.model import Reading
from kernel.wallclock import now_ms

db, port, keyfile, first, mode, topic, t0 = sys.argv[1:8]
first, t0 = int(first), int(t0)
key = load_pem_private_key(Path(keyfile).read_bytes(), None)
kid = wire.kid_for(key.public_key())


def say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def produce(store):
    i = first
    while True:
        store.submit([Reading(f"s{j % 4}", "t", t0 + j, j * 0.5, "C") for j in range(i, i + 20)])
        i += 20
        await store.flush()
        say(f"C {i}")  # every reading numbered below i is committed
        await asyncio.sleep(0.003)


def seal_one(store):
    p = store.pending(upto_ts_ms=None, limit=300)
    if p is None:
        return False
    seq = store.next_seq()
    body = wire.encode_batch(
        gateway_id="gw1", seq=seq, created_ms=now_ms(),
        series=[wire.SeriesInfo(s, q, u) for s, q, u in p.series_keys],
        readings=wire.ReadingColumns(series=p.series, ts_ms=p.ts_ms, value=p.value, quality=p.quality),
    )
    store.seal_batch(seq, wire.sign(body, key, kid), p)
    return True


async def seal(store):
    while True:
        while await asyncio.to_thread(seal_one, store):
            pass
        await asyncio.sleep(0.01)


async def deliver(store, client):
    while True:
        entries = await asyncio.to_thread(store.undelivered, limit=50)
        for entry in entries:
            await client.publish(topic, entry.blob, qos=1)  # returns after the PUBACK
            await asyncio.to_thread(store.mark_delivered, entry.seq)
        if not entries:
            # pending first, then the outbox: a batch being sealed is in one or the other
            if (
                mode == "drain"
                and await asyncio.to_thread(store.pending, upto_ts_ms=None, limit=1) is None
                and not await asyncio.to_thread(store.undelivered, limit=1)
            ):
                say("DRAINED")
                return
            await asyncio.sleep(0.01)


async def main():
    store = await asyncio.to_thread(Store.open, Path(db), StoreOptions(commit_interval_s=0.02))
    async with aiomqtt.Client("127.0.0.1", int(port), identifier="crashloop-agent") as client:
        say("UP")
        async with asyncio.TaskGroup() as tasks:
            sealer = tasks.create_task(seal(store))
            if mode == "run":
                tasks.create_task(produce(store))
            await deliver(store, client)  # returns only in drain mode, once all is delivered
            sealer.cancel()
    await asyncio.to_thread(store.close)


asyncio.run(main())
'''


class Receiver:
    """The reference receiver (`gateway receiver`), subscribed for the whole test."""

    def __init__(self, tmp_path: Path, port: int, public_pem: bytes) -> None:
        keys = tmp_path / "receiver-keys"
        keys.mkdir()
        (keys / "gw1.pem").write_bytes(public_pem)
        self.db = tmp_path / "received.db"
        self.stats = tmp_path / "receiver.json"
        self._log = (tmp_path / "receiver.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "receiver", "--broker", f"127.0.0.1:{port}",
             "--keys", str(keys), "--db", str(self.db), "--topic", TOPIC,
             "--client-id", "crashloop-receiver", "--stats-file", str(self.stats)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def start(self) -> None:
        deadline = time.monotonic() + 30
        while self.statistics().get("connected") is not True:
            assert self.process.poll() is None, "the receiver exited"
            assert time.monotonic() < deadline, "receiver did not subscribe"
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(15)
        self._log.close()

    def statistics(self) -> dict[str, Any]:
        try:
            stats: dict[str, Any] = json.loads(self.stats.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return stats

    def count(self) -> int:
        return int(self.statistics().get("readings_stored", 0))

    def readings(self) -> Counter[tuple[str, int]]:
        """(sensor, ts_ms) of every reading the receiver's database holds, with multiplicity."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return Counter(conn.execute("SELECT sensor, ts_ms FROM readings").fetchall())


def reading_key(j: int) -> tuple[str, int]:
    return (f"s{j % 4}", T0 + j)


def check_database(db: Path, keyring: wire.Keyring) -> None:
    """integrity_check is ok and every outbox row is one whole, verifiable batch."""
    if not db.exists():
        return
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "outbox" not in tables:
            return  # killed while creating the schema: the next open finishes it
        for seq, blob, readings in conn.execute("SELECT seq, blob, readings FROM outbox"):
            batch = wire.verify_and_decode(bytes(blob), keyring)
            assert batch.seq == seq and len(batch.readings) == readings
    finally:
        conn.close()


def write_key(path: Path, key: Ed25519PrivateKey) -> Path:
    """The gateway's private key as the agent loads it (PEM, PKCS#8)."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def kill_at_random(child: subprocess.Popen[bytes], out: Path, *, early: bool, rng: random.Random) -> None:
    """SIGKILL `child` anywhere after launch (early) or anywhere after its first commit."""
    if early:
        time.sleep(rng.uniform(0.02, 0.9))  # start-up, opening and schema creation included
    else:
        wait_for_first_commit(out, child)
        time.sleep(rng.uniform(0.0, 0.4))  # ingest, seal, publish, acknowledgement
    child.send_signal(signal.SIGKILL)
    child.wait(10)


def wait_for_first_commit(out: Path, child: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Until the agent confirms its first commit (progress, not time: a loaded machine starts slowly)."""
    deadline = time.monotonic() + timeout_s
    while confirmed_upto(out) is None:
        assert child.poll() is None, f"the agent exited with {child.returncode} before its first commit"
        assert time.monotonic() < deadline, "the agent did not commit within a minute"
        time.sleep(0.005)


def confirmed_upto(out: Path) -> int | None:
    """The highest reading number the agent confirmed as committed in this run."""
    last = None
    for line in out.read_text().splitlines():
        if line.startswith("C "):
            last = int(line.split()[1])
    return last


@pytest.mark.slow
def test_sigkill_crash_loop_loses_and_duplicates_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    key = Ed25519PrivateKey.generate()
    keyfile = write_key(tmp_path / "gw1.key", key)
    keyring = wire.Keyring()
    keyring.add("gw1", key.public_key())
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    db = tmp_path / "state" / "buffer.db"
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    receiver = Receiver(tmp_path, broker.port, public_pem)
    receiver.start()
    rng = random.Random(20261126)
    confirmed: set[tuple[str, int]] = set()
    produced: set[int] = set()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def launch(k: int, mode: str, out: Path) -> subprocess.Popen[bytes]:
        args = [str(agent), str(db), str(broker.port), str(keyfile), str(k * RUN_SPAN), mode]
        with out.open("wb") as stdout, (tmp_path / f"agent{k}.err").open("wb") as stderr:
            return subprocess.Popen(
                [sys.executable, *args, TOPIC, str(T0)], stdout=stdout, stderr=stderr, env=env
            )

    try:
        for k in range(KILLS):
            out = tmp_path / f"agent{k}.out"
            kill_at_random(launch(k, "run", out), out, early=k % 2 == 0, rng=rng)
            upto = confirmed_upto(out)
            if upto is not None:
                confirmed |= {reading_key(j) for j in range(k * RUN_SPAN, upto)}
                produced |= {k}
            check_database(db, keyring)

        out = tmp_path / "drain.out"
        child = launch(KILLS, "drain", out)
        assert child.wait(60) == 0, (tmp_path / f"agent{KILLS}.err").read_text()
        assert "DRAINED" in out.read_text()
        deadline = time.monotonic() + 15
        while receiver.count() < len(confirmed) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        receiver.stop()

    assert receiver.statistics()["rejected"] == 0
    assert len(produced) >= KILLS // 2  # most runs got far enough to commit something
    counts = receiver.readings()
    assert [key for key, n in counts.items() if n > 1] == []  # exactly once
    missing = confirmed - set(counts)
    assert not missing, f"{len(missing)} committed readings never arrived"
    assert all(T0 <= ts < T0 + (KILLS + 1) * RUN_SPAN for _, ts in counts)
