"""An idle gateway's heartbeat reaches the real receiver (real Mosquitto), and its traffic totals stay."""

from __future__ import annotations

import json
import signal
import sqlite3
import tomllib
from pathlib import Path

import pytest
from conftest import Processes, start_receiver, wait_until
from test_skeleton_path import write_config

from gateway import tomlwriter
from gateway.heartbeat import KIND
from hil.broker import Mosquitto, free_port


def heartbeats(db: Path) -> list[dict[str, int]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as conn:
        rows = conn.execute("SELECT detail FROM events WHERE gateway_id = 'gw-test' AND kind = ?", (KIND,))
        return [json.loads(detail) for (detail,) in rows]


@pytest.mark.slow  # about 5 s of an idle agent: out of `make test-fast`
def test_an_idle_gateway_is_seen_alive_by_its_heartbeats(tmp_path: Path, processes: Processes) -> None:
    port = free_port()
    config, receiver_keys = write_config(tmp_path, port, tmp_path / "unused")
    raw = tomllib.loads(config.read_text())
    raw["sensors"] = []  # nothing to send, ever: only heartbeats travel
    raw["batching"] = {"max_delay_s": 1.0}
    raw["uplink"] |= {"heartbeat_s": 1.5, "nat_timeout_s": 1.0}
    config.write_text(tomlwriter.dumps(raw))
    db, stats_file = tmp_path / "received.db", tmp_path / "receiver.json"
    with Mosquitto(tmp_path / "broker", port=port):
        start_receiver(processes, port, receiver_keys, db, stats_file)
        agent = processes.start("agent", "-m", "gateway", "run", "--config", str(config))
        wait_until(lambda: len(heartbeats(db)) >= 2, 30, "two heartbeats")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
    first, second = heartbeats(db)[:2]
    assert (first["sensors_ok"], first["sensors_stale"], first["backlog_readings"]) == (0, 0, 0)
    assert second["today_bytes"] > first["today_bytes"]  # the first heartbeat's bytes on the uplink
    with sqlite3.connect(tmp_path / "state" / "buffer.db") as conn:  # stored at shutdown at the latest
        (sent,) = conn.execute("SELECT SUM(app_sent) FROM traffic_day").fetchone()
    assert sent >= 2 * 100  # every heartbeat batch is a few hundred signed bytes
