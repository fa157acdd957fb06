"""The walking skeleton end to end: pty NMEA station -> agent -> real Mosquitto -> verifying receiver."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import aiomqtt
import cbor2
import pytest
from conftest import Processes, read_json, wait_until
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pycose.algorithms import EdDSA
from pycose.headers import Algorithm
from pycose.keys.okp import OKPKey
from pycose.messages import Sign1Message

from gateway import signing_key, tomlwriter, wire
from gateway.clock import kernel_clock_synchronised
from gateway.control import query_status
from hil.broker import Mosquitto, free_port
from kernel.errors import GatewayError
from kernel.model import Quality


def start_station(processes: Processes, link: Path, rate: float) -> subprocess.Popen[str]:
    station = processes.start(
        "station", "-m", "hil.sims.nmea_station", "--link", str(link), "--rate", str(rate), pipe=True
    )
    assert station.stdout is not None
    assert "ready" in station.stdout.readline()
    return station


def write_config(tmp_path: Path, port: int, link: Path) -> tuple[Path, Path]:
    private, public = signing_key.generate_keypair(tmp_path / "keys")
    receiver_keys = tmp_path / "receiver-keys"
    receiver_keys.mkdir()
    (receiver_keys / "gw-test.pem").write_bytes(public.read_bytes())
    config = {
        "gateway_id": "gw-test",
        "key_file": str(private),
        "state_dir": str(tmp_path / "state"),
        "batching": {"slice_s": 1.0},
        "buffer": {"commit_interval_s": 0.2},
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": port}, "ack_timeout_s": 3.0},
        "logging": {"format": "json", "level": "debug"},
        "sensors": [
            {
                "id": "weather-1",
                "driver": "serial",
                "stale_after_s": 5,
                "time_resolution_ms": 1,
                "resolution": {"air_temperature": 0.1},
                "serial": {"port": str(link), "baud": 4800, "protocol": "nmea"},
            }
        ],
    }
    path = tmp_path / "agent.toml"
    path.write_text(tomlwriter.dumps(config))
    return path, receiver_keys


def status(tmp_path: Path) -> dict[str, object]:
    try:
        return asyncio.run(query_status(tmp_path / "state" / "control.sock", timeout_s=1.0))
    except GatewayError:
        return {}


def station_total(station: subprocess.Popen[str]) -> int:
    station.send_signal(signal.SIGTERM)
    out, _ = station.communicate(timeout=10)
    return int(json.loads(out.strip().splitlines()[-1])["readings"])


def stored_rows(db: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


@pytest.mark.slow
def test_backlog_from_an_outage_arrives_once_in_seq_order_and_sigterm_is_clean(
    tmp_path: Path, processes: Processes
) -> None:
    link = tmp_path / "ttyWEATHER"
    port = free_port()
    clock_before = kernel_clock_synchronised() is not False
    station = start_station(processes, link, rate=10)
    config, receiver_keys = write_config(tmp_path, port, link)
    db = tmp_path / "received.db"
    stats_file = tmp_path / "receiver.json"
    broker = Mosquitto(tmp_path / "broker", port=port)
    # the backend's persistent session exists before the outage, as on a real deployment: the
    # broker keeps it (and queues for it) across its restart
    broker.start()
    processes.start(
        "receiver", "-m", "gateway", "receiver", "--broker", f"127.0.0.1:{port}",
        "--keys", str(receiver_keys), "--db", str(db), "--stats-file", str(stats_file),
    )  # fmt: skip
    wait_until(lambda: read_json(stats_file).get("connected") is True, 30, "the receiver's session")
    broker.stop()
    agent = processes.start("agent", "-m", "gateway", "run", "--config", str(config))

    # the broker is not there yet: the agent reads, commits and seals batches into its outbox
    def backlog() -> bool:
        store = status(tmp_path).get("store") or {}
        assert isinstance(store, dict)
        return int(store.get("committed", 0)) >= 40 and int(store.get("outbox_rows", 0)) >= 2

    wait_until(backlog, 30, "readings committed and batches sealed while the broker is down")
    uplink = status(tmp_path)["uplink"]
    assert isinstance(uplink, dict) and uplink["state"] != "connected"
    metrics = subprocess.run(
        [sys.executable, "-m", "gateway", "metrics", "--config", str(config)],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "gateway_uplink_up 0\n" in metrics and "gateway_agent_up 1\n" in metrics
    assert int(re.search(r"^gateway_store_committed (\d+)$", metrics, re.M)[1]) >= 40  # type: ignore[index]
    assert re.search(r'^gateway_produced\{sensor="weather-1"\} \d+$', metrics, re.M)

    with broker:
        time.sleep(2)
        produced = station_total(station)
        wait_until(
            lambda: read_json(stats_file).get("readings_stored", 0) >= produced,
            30,
            "the backlog at the receiver",
        )
        started = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0, processes.log("agent")
        assert time.monotonic() - started < 5.0

    received = read_json(stats_file)
    assert received["rejected"] == 0
    assert stored_rows(db, "SELECT count(*) FROM readings")[0][0] == produced
    if clock_before == (kernel_clock_synchronised() is not False):  # the kernel did not change its mind
        # readings are flagged exactly when the kernel says the clock is not synchronised, and the
        # backend hears why
        flagged = {row[0] for row in stored_rows(db, "SELECT DISTINCT quality & 2 FROM readings")}
        assert flagged == ({0} if clock_before else {int(Quality.CLOCK_UNSYNCED)})
        events = [row[0] for row in stored_rows(db, "SELECT kind FROM events WHERE source = 'clock'")]
        assert events == ([] if clock_before else ["clock.unsynchronised"])
    seqs = [row[0] for row in stored_rows(db, "SELECT seq FROM batches ORDER BY seq")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # each series arrives in timestamp order
    ts = [
        row[0]
        for row in stored_rows(
            db, "SELECT ts_ms FROM readings WHERE quantity = 'air_temperature' ORDER BY seq, rowid"
        )
    ]
    assert ts == sorted(ts)
    log = processes.log("agent")
    assert "uplink connected" in log
    assert '"task.failed"' in log  # the outage was noticed and retried, not fatal


def test_agent_written_batch_verifies_with_pycose(
    tmp_path: Path, processes: Processes, broker: Mosquitto
) -> None:
    link = tmp_path / "ttyWEATHER"
    start_station(processes, link, rate=10)
    config, receiver_keys = write_config(tmp_path, broker.port, link)

    async def capture() -> bytes:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("gateways/gw-test/batches", qos=1)
            processes.start("agent", "-m", "gateway", "run", "--config", str(config))
            async with asyncio.timeout(30):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    return message.payload
        raise AssertionError("no batch")

    blob = asyncio.run(capture())
    public = load_pem_public_key((receiver_keys / "gw-test.pem").read_bytes())
    raw = public.public_bytes_raw()  # type: ignore[union-attr]
    parts = cbor2.loads(blob)
    assert isinstance(parts, list)  # the compact envelope: untagged, the topic says COSE_Sign1
    protected, unprotected, payload, signature = parts
    assert cbor2.loads(protected) == {4: wire.kid_for(public)[:4]}  # type: ignore[arg-type]
    message = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
    # no alg travels: the verifier takes EdDSA from the registered Ed25519 key (RFC 9052 section 3.1)
    message.uhdr_update({Algorithm: EdDSA})
    message.key = OKPKey(crv="Ed25519", x=raw)
    assert message.verify_signature()
    tampered = Sign1Message.from_cose_obj(
        [protected, {Algorithm: EdDSA}, payload[:-1] + b"\x00", signature], True
    )
    tampered.key = message.key
    assert not tampered.verify_signature()


def test_agent_refuses_a_group_readable_key(tmp_path: Path) -> None:
    link = tmp_path / "ttyNONE"
    config, _ = write_config(tmp_path, free_port(), link)
    private_key = tomllib.loads(config.read_text())["key_file"]
    Path(private_key).chmod(0o640)
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot start" in result.stderr
    assert private_key in result.stderr


@pytest.mark.slow
def test_demo_loses_nothing_across_a_broker_outage(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--duration",
            "24",
            "--rate",
            "5",
            "--workdir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary["lost"] == 0 and summary["rejected"] == 0
    assert summary["produced"] > 50
    assert summary["verified"] >= 1
