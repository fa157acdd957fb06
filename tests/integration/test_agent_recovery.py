"""The agent after a hostile event: a quarantined buffer keeps delivering under a new epoch at the real receiver."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Processes, read_json, start_receiver, wait_until
from test_skeleton_path import start_station, status, stored_rows, write_config

from hil.broker import Mosquitto, free_port


def station_and_receiver(tmp_path: Path, processes: Processes, broker: Mosquitto) -> tuple[Path, Path, Path]:
    """A weather station on a pty, the agent's config and a receiver on the broker: (config, db, stats)."""
    link = tmp_path / "ttyWEATHER"
    start_station(processes, link, rate=10)
    config, receiver_keys = write_config(tmp_path, broker.port, link)
    db, stats_file = tmp_path / "received.db", tmp_path / "receiver.json"
    start_receiver(processes, broker.port, receiver_keys, db, stats_file)
    return config, db, stats_file


@pytest.mark.slow
def test_after_a_quarantine_delivery_goes_on_with_no_replay_and_the_backend_hears_of_it(
    tmp_path: Path, processes: Processes, broker: Mosquitto
) -> None:
    config, db, stats_file = station_and_receiver(tmp_path, processes, broker)

    def batches_stored() -> int:
        return int(read_json(stats_file).get("batches_stored", 0))

    first = processes.start("agent", "-m", "gateway", "run", "--config", str(config))
    wait_until(lambda: batches_stored() >= 3, 30, "three batches of the first database")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0, processes.log("agent")
    before = batches_stored()
    zero_page(tmp_path / "state" / "buffer.db", "chunk")  # quick_check fails: quarantined

    processes.start("agent2", "-m", "gateway", "run", "--config", str(config))
    wait_until(lambda: batches_stored() >= before + 3, 30, "three batches of the fresh database")
    received = read_json(stats_file)
    assert received["rejected"] == 0, received  # no batch of the new database is taken for a replay
    epochs = stored_rows(
        db, "SELECT lower(hex(epoch)), min(seq) FROM batches GROUP BY epoch ORDER BY min(received_ms)"
    )
    assert [row[1] for row in epochs] == [1, 1]  # two databases, each starting at seq 1
    (detail,) = stored_rows(db, "SELECT detail FROM events WHERE kind = 'buffer.quarantined'")
    event = json.loads(str(detail[0]))
    assert (event["old_epoch"], event["epoch"]) == (epochs[0][0], epochs[1][0])
    assert (tmp_path / "state" / "quarantine" / event["file"]).exists()


def unparsable_schema(db: Path) -> None:
    """A CREATE statement ending in bytes that are not UTF-8: SQLite's error text is not either."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA writable_schema=ON")
        sql = b"CREATE TABLE chunk \xff\xfe"
        conn.execute("UPDATE sqlite_master SET sql = CAST(? AS TEXT) WHERE name = 'chunk'", (sql,))


def truncated(db: Path) -> None:
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)


def noisy_wal_frame(db: Path) -> None:
    wal = Path(f"{db}-wal")
    size = wal.stat().st_size
    with open(wal, "r+b") as f:
        f.seek(32 + 24 + ((size - 32) // (24 + 1024) - 1) * (24 + 1024))  # the last frame's page
        f.write(random.Random(5).randbytes(1024))


@pytest.mark.slow
def test_the_agent_survives_damaged_buffers_in_a_row_and_keeps_delivering(
    tmp_path: Path, processes: Processes, broker: Mosquitto
) -> None:
    config, db, stats_file = station_and_receiver(tmp_path, processes, broker)
    buffer_db = tmp_path / "state" / "buffer.db"
    for round_, damage in enumerate((None, unparsable_schema, truncated, noisy_wal_frame)):
        if damage is not None:
            damage(buffer_db)
        stored = int(read_json(stats_file).get("batches_stored", 0))
        agent = processes.start(f"agent{round_}", "-m", "gateway", "run", "--config", str(config))
        wait_until(
            lambda: int(read_json(stats_file).get("batches_stored", 0)) >= stored + 2,  # noqa: B023
            30,
            f"batches after round {round_}",
        )
        assert agent.poll() is None
        if damage is truncated:  # leave the WAL behind for the next round's damage
            agent.kill()
            agent.wait(timeout=10)
        else:
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=10) == 0
        assert "Traceback" not in processes.log(f"agent{round_}")
    assert read_json(stats_file)["rejected"] == 0
    quarantined = stored_rows(db, "SELECT count(*) FROM events WHERE kind = 'buffer.quarantined'")[0][0]
    assert quarantined >= 1 and len(list((tmp_path / "state" / "quarantine").glob("*.db"))) == quarantined


def zero_page(db: Path, table: str) -> None:
    """Zero the root page of `table`: the b-tree is broken, the rest of the file still reads."""
    with sqlite3.connect(db) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\0" * page_size)


@pytest.mark.slow
def test_a_second_agent_on_the_same_state_directory_is_refused_and_the_first_stays_visible(
    tmp_path: Path, processes: Processes
) -> None:
    config, _ = write_config(tmp_path, free_port(), tmp_path / "ttyNONE")
    first = processes.start("agent", "-m", "gateway", "run", "--config", str(config))
    wait_until(lambda: status(tmp_path), 30, "the first agent's control socket")
    second = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert second.returncode == 2
    assert second.stderr.strip().count("\n") == 0  # one line
    assert f"another agent (PID {first.pid})" in second.stderr
    assert status(tmp_path)["gateway_id"] == "gw-test"  # the socket is still the first agent's
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    # the lock went with the first agent: a new one starts
    third = processes.start("agent3", "-m", "gateway", "run", "--config", str(config))
    wait_until(lambda: status(tmp_path), 30, "the next agent's control socket")
    third.send_signal(signal.SIGTERM)
    assert third.wait(timeout=10) == 0
