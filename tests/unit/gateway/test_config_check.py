"""`gateway config check` finds everything that would break or degrade a run, in one pass, by sensor id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gateway import signing_key, tomlwriter


def _check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check", str(path), *extra],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def _broken(tmp_path: Path) -> Path:
    """A file with one of every mistake a technician makes."""
    private, _ = signing_key.generate_keypair(tmp_path / "keys")
    private.chmod(0o644)  # readable by everyone
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the state directory's parent should be")
    modbus = {"host": "10.0.0.5", "poll_interval_s": 5}
    config = {
        "gateway_id": "gw-1",
        "key_file": str(private),
        "state_dir": str(blocked / "state"),
        "sensors": [
            {"id": "dust-1", "driver": "serial", "resolution": {"pm25": 0.1},
             "serial": {"port": "/dev/ttyUSB0", "protocol": "sds011"}},
            {"id": "dust-2", "driver": "serial", "serial": {"port": "/dev/ttyUSB0", "protocol": "pms5003"}},
            {"id": "weather-1", "driver": "serial", "resolution": {"air_temprature": 0.1},
             "serial": {"port": "/dev/ttyUSB1", "protocol": "wxt"}},
            {"id": "probe-1", "driver": "serial", "serial": {"port": "/dev/ttyUSB3", "protocol": "nmea", "baud": -5}},
            {"id": "meter-1", "driver": "modbus", "modbus": {"unit": 3, "profile": "sdm630", **modbus}},
            {"id": "meter-2", "driver": "modbus", "modbus": {"unit": 3, "profile": "sdm630", **modbus}},
            {"id": "level-1", "driver": "modbus", "modbus": {"unit": 4, "profile": "radar_levle", **modbus}},
            {"id": "dust-1", "driver": "serial", "serial": {"port": "/dev/ttyUSB2", "protocol": "sds011"}},
        ],
    }  # fmt: skip
    path = tmp_path / "gateway.toml"
    path.write_text(tomlwriter.dumps(config))
    return path


def test_every_error_of_a_file_is_reported_at_once_naming_sensors_by_id(tmp_path: Path) -> None:
    result = _check(_broken(tmp_path))
    assert result.returncode == 2
    out = result.stderr
    assert "Traceback" not in out
    assert "sensor 'dust-1': the id is used by 2 sensors" in out
    assert "port /dev/ttyUSB0: used by 2 sensors: dust-1, dust-2" in out
    assert "sensor 'dust-1' resolution.pm25: sds011 emits no quantity 'pm25' (it emits: pm10, pm2_5)" in out
    assert "sensor 'weather-1' resolution.air_temprature: wxt emits no quantity" in out
    assert "sensor 'probe-1' serial.baud: got -5" in out
    assert "key_file: private key" in out and "chmod 600" in out
    assert "state_dir: " in out and "cannot be created" in out
    assert "unit 3 is claimed by sensors 'meter-1', 'meter-2' with overlapping registers (input 0-" in out
    assert "sensor 'level-1' modbus.profile: unknown profile 'radar_levle'; known: " in out
    assert "analog_4_20ma, radar_level, sdm630" in out
    assert "sensors[" not in out  # every sensor has an id: it is named by it


def test_key_and_state_directory_problems_come_with_the_rest(tmp_path: Path) -> None:
    private, _ = signing_key.generate_keypair(tmp_path / "keys")
    private.chmod(0o640)
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    sensor = {"id": "dust-1", "driver": "serial", "resolution": {"pm25": 1.0},
              "serial": {"port": "/dev/ttyUSB0", "protocol": "sds011"}}  # fmt: skip
    path = tmp_path / "gateway.toml"
    config = {
        "gateway_id": "gw-1",
        "key_file": str(private),
        "state_dir": str(blocked / "s"),
        "sensors": [sensor],
    }
    path.write_text(tomlwriter.dumps(config))
    result = _check(path, "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    where = {error["where"]: error["message"] for error in report["errors"]}
    assert report["ok"] is False
    assert "resolution.pm25" in " ".join(where)
    assert "chmod 600" in where["key_file"]
    assert "cannot be created" in where["state_dir"]
    os.unlink(private)
    again = json.loads(_check(path, "--json").stdout)
    assert any("No such file" in e["message"] for e in again["errors"] if e["where"] == "key_file")


def test_a_good_file_passes(tmp_path: Path) -> None:
    private, _ = signing_key.generate_keypair(tmp_path / "keys")
    sensor = {"id": "dust-1", "driver": "serial", "resolution": {"pm2_5": 0.1},
              "serial": {"port": "/dev/ttyUSB0", "protocol": "sds011"}}  # fmt: skip
    path = tmp_path / "gateway.toml"
    config = {
        "gateway_id": "gw-1",
        "key_file": str(private),
        "state_dir": str(tmp_path / "s"),
        "sensors": [sensor],
    }
    path.write_text(tomlwriter.dumps(config))
    result = _check(path, "--json")
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout) == {"file": str(path), "ok": True, "errors": [], "warnings": []}


def test_a_heartbeat_that_would_spend_the_data_plan_is_a_warning_not_an_error(tmp_path: Path) -> None:
    private, _ = signing_key.generate_keypair(tmp_path / "keys")
    path = tmp_path / "gateway.toml"
    config = {"gateway_id": "gw-1", "key_file": str(private), "state_dir": str(tmp_path / "s"),
              "uplink": {"heartbeat_s": 60}, "sensors": []}  # fmt: skip
    path.write_text(tomlwriter.dumps(config))
    result = _check(path, "--json")
    assert result.returncode == 0, result.stdout
    [warning] = json.loads(result.stdout)["warnings"]
    assert warning["where"] == "uplink.heartbeat_s" and "1440 heartbeat batches a day" in warning["message"]
    plain = _check(path)
    assert plain.returncode == 0 and "warning: uplink.heartbeat_s: 60 s" in plain.stderr
