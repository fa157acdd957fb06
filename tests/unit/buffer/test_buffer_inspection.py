"""`gateway buffer status|recent|export|outbox|gaps`: a technician's read-only look, also while the agent runs."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from buffer import Store, StoreOptions
from gateway.cli.buffer import group
from kernel.model import Reading


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Store]:
    """An open store (the agent is running) with readings, one sealed batch and a gap."""
    store = Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.02))
    store.submit([Reading("pm-1", "pm10", 1000 + i, 10.5 + i, "ug/m3") for i in range(30)])
    store.submit([Reading("wx-1", "temperature", 1500 + i, -3.25, "Cel") for i in range(5)])
    store.flush_blocking(5)
    p = store.pending(upto_ts_ms=1010, limit=100)
    assert p is not None
    store.seal_batch(store.next_seq(), b"signed-batch", p)
    yield store
    store.close()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(group, list(args))
    return result.exit_code, result.output


def test_stats_json_counts_what_the_buffer_holds(running: Store, tmp_path: Path) -> None:
    code, out = invoke("stats", "--state-dir", str(tmp_path), "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["readings"] == 35 and stats["pending"] == 25
    assert stats["outbox_rows"] == 1 and stats["outbox_readings"] == 10
    assert stats["next_seq"] == 2 and stats["oldest_pending_ms"] == 1010
    assert stats["epoch"] == running.epoch.hex()  # a technician sees which database's seqs these are


def test_recent_newest_first_and_by_sensor(running: Store, tmp_path: Path) -> None:
    code, out = invoke("recent", "--state-dir", str(tmp_path), "--json", "--limit", "3")
    assert code == 0
    assert [r["ts_ms"] for r in json.loads(out)] == [1504, 1503, 1502]
    code, out = invoke("recent", "--state-dir", str(tmp_path), "--json", "--sensor", "pm-1")
    rows = json.loads(out)
    assert len(rows) == 20 and {r["sensor"] for r in rows} == {"pm-1"}
    assert rows[0] == {
        "sensor": "pm-1",
        "quantity": "pm10",
        "ts_ms": 1029,
        "value": 39.5,
        "unit": "ug/m3",
        "quality": 0,
        "flags": [],
    }


def test_recent_names_quality_flags_and_rounds_at_the_declared_resolution(tmp_path: Path) -> None:
    from gateway import tomlwriter
    from kernel.model import Quality

    store = Store.open(tmp_path / "state" / "buffer.db", StoreOptions(commit_interval_s=0.02))
    flags = Quality.CLOCK_UNSYNCED | Quality.DEVICE_WARNING
    store.submit([Reading("meter-1", "voltage_l1", 1000, 230.12345678, "V", flags)])
    store.flush_blocking(5)
    store.close()
    config = tmp_path / "gateway.toml"
    sensor = {"id": "meter-1", "driver": "modbus", "resolution": {"voltage_l1": 0.1},
              "modbus": {"host": "10.0.0.5", "unit": 1, "profile": "sdm630"}}  # fmt: skip
    config.write_text(
        tomlwriter.dumps({"gateway_id": "gw", "key_file": "k", "state_dir": "state", "sensors": [sensor]})
    )
    code, out = invoke("recent", "--config", str(config))
    assert code == 0
    row = next(line for line in out.splitlines() if "meter-1" in line)
    assert " 230.1 " in row and "230.12" not in row
    assert "CLOCK_UNSYNCED," in row and "DEVICE_WARNING" in out  # by name, not 10


def test_outbox_and_tables(running: Store, tmp_path: Path) -> None:
    code, out = invoke("outbox", "--state-dir", str(tmp_path), "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["seq"] == 1 and row["readings"] == 10 and row["bytes"] == len(b"signed-batch")
    code, out = invoke("stats", "--state-dir", str(tmp_path))
    assert code == 0 and "outbox_rows" in out


def test_gaps_lists_given_up_ranges(tmp_path: Path) -> None:
    options = StoreOptions(commit_interval_s=0.02, max_bytes=40_000, min_free_bytes=0)
    with Store.open(tmp_path / "buffer.db", options) as store:
        rng = random.Random(5)
        for k in range(20):
            store.submit([Reading("a", "t", k * 1000 + i, rng.random(), "C") for i in range(500)])
            store.flush_blocking(5)
        code, out = invoke("gaps", "--state-dir", str(tmp_path), "--json")
    assert code == 0
    rows = json.loads(out)
    assert rows and rows[0]["reason"] == "buffer_full" and rows[0]["batch_seq"] is None


def test_missing_buffer_exits_3(tmp_path: Path) -> None:
    code, out = invoke("stats", "--state-dir", str(tmp_path / "nope"))
    assert code == 3 and "no buffer" in out


def test_status_is_the_name_and_stats_still_works(running: Store, tmp_path: Path) -> None:
    code, out = invoke("status", "--state-dir", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)["pending"] == 25
    code, out = invoke("stats", "--state-dir", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)["pending"] == 25


def test_the_buffer_is_found_through_the_agents_config(running: Store, tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'gateway_id = "gw-test"\nkey_file = "gw.key"\nstate_dir = "{tmp_path}"\n')
    code, out = invoke("status", "--config", str(config), "--json")
    assert code == 0, out
    assert json.loads(out)["readings"] == 35


def test_export_csv_has_every_stored_reading_with_its_state(running: Store, tmp_path: Path) -> None:
    code, out = invoke("export", "--state-dir", str(tmp_path))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 35
    first = rows[0]
    assert first == {
        "time": "1970-01-01 00:00:01.000Z",
        "ts_ms": "1000",
        "sensor": "pm-1",
        "quantity": "pm10",
        "value": "10.5",
        "unit": "ug/m3",
        "quality": "0",
        "batched": "True",
    }
    assert sum(r["batched"] == "True" for r in rows) == 10  # the sealed batch


def test_export_filters_by_sensor_and_time(running: Store, tmp_path: Path) -> None:
    args = ["export", "--state-dir", str(tmp_path), "--format", "jsonl", "--sensor", "pm-1"]
    code, out = invoke(*args, "--since", "1970-01-01T00:00:01.020", "--until", "1025")
    assert code == 0
    assert [json.loads(line)["ts_ms"] for line in out.splitlines()] == [1020, 1021, 1022, 1023, 1024]
    code, out = invoke("export", "--state-dir", str(tmp_path), "--since", "yesterday")
    assert code == 2 and "--since" in out


def test_export_to_a_file(running: Store, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    code, _ = invoke("export", "--state-dir", str(tmp_path), "--sensor", "wx-1", "-o", str(target))
    assert code == 0
    assert len(target.read_text().splitlines()) == 1 + 5
