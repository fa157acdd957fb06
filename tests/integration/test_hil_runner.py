"""The hardware runner (`python -m hil.runner`) against simulated devices: pty sensors, a Modbus slave."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Processes

from gateway import signing_key, tomlwriter


def config_for(tmp_path: Path, processes: Processes, *, missing_sensor: bool) -> Path:
    weather, dust = tmp_path / "ttyWEATHER", tmp_path / "ttyDUST"
    processes.start_ready("weather", "-m", "hil.sims.nmea_station", "--link", str(weather), "--rate", "5")
    processes.start_ready("dust", "-m", "hil.sims.sds011", "--link", str(dust), "--rate", "5")
    slave = processes.start_ready(
        "modbus", "-m", "hil.sims.modbus_slave", "--tcp", "127.0.0.1:0", "--slave", "2:radar_level"
    )
    host, _, port = slave["tcp"].rpartition(":")
    private, _ = signing_key.generate_keypair(tmp_path / "keys")
    sensors: list[dict[str, Any]] = [
        {"id": "weather-1", "driver": "serial", "serial": {"port": str(weather), "protocol": "nmea"}},
        {"id": "dust-1", "driver": "serial", "serial": {"port": str(dust), "protocol": "sds011"}},
        {"id": "level-1", "driver": "modbus",
         "modbus": {"host": host, "tcp_port": int(port), "unit": 2, "profile": "radar_level", "poll_interval_s": 0.2}},
    ]  # fmt: skip
    if missing_sensor:
        sensors.append(
            {
                "id": "unplugged",
                "driver": "serial",
                "serial": {"port": str(tmp_path / "ttyNONE"), "protocol": "wxt"},
            }
        )
    config = {
        "gateway_id": "gw-hil",
        "key_file": str(private),
        "state_dir": str(tmp_path / "state"),
        "sensors": sensors,
    }
    path = tmp_path / "gateway.toml"
    path.write_text(tomlwriter.dumps(config))
    return path


def run_runner(config: Path, timeout_s: float) -> tuple[int, dict[str, dict[str, Any]], dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "hil.runner", "--config", str(config), "--readings", "3", "--timeout", str(timeout_s), "--json"],
        capture_output=True, text=True, timeout=timeout_s + 60, check=False,
    )  # fmt: skip
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, {line["sensor"]: line for line in lines[:-1]}, lines[-1]


@pytest.mark.slow
def test_every_sensor_that_delivers_passes_and_the_run_exits_0(tmp_path: Path, processes: Processes) -> None:
    code, sensors, summary = run_runner(config_for(tmp_path, processes, missing_sensor=False), 30)
    assert code == 0, sensors
    assert summary["passed"] is True and summary["sensors"] == 3
    assert all(line["passed"] and line["readings"] >= 3 for line in sensors.values())
    assert {"pm2_5", "pm10"} <= set(sensors["dust-1"]["quantities"])
    assert "water_level" in sensors["level-1"]["quantities"]
    assert {d["driver"] for d in summary["drivers"]} >= {"weather-1", "dust-1"}


@pytest.mark.slow
def test_a_sensor_that_delivers_nothing_fails_the_run_and_says_why(
    tmp_path: Path, processes: Processes
) -> None:
    code, sensors, summary = run_runner(config_for(tmp_path, processes, missing_sensor=True), 8)
    assert code == 1
    assert summary["passed"] is False
    assert sensors["weather-1"]["passed"] and sensors["dust-1"]["passed"]
    assert sensors["unplugged"] == sensors["unplugged"] | {
        "passed": False,
        "readings": 0,
        "first_after_s": None,
    }
    assert any(event.startswith("port_lost") for event in sensors["unplugged"]["events"])
