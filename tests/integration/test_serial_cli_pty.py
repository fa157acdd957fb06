"""`gateway serial probe|sniff` against simulators on real ptys, as a technician runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial


@pytest.fixture
def sds011(tmp_path: Path) -> Iterator[Path]:
    link = tmp_path / "ttySDS"
    with subprocess.Popen(
        [sys.executable, "-m", "hil.sims.sds011", "--link", str(link), "--rate", "20", "--bad-every", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as sim:
        assert sim.stdout is not None
        sim.stdout.readline()
        yield link
        sim.terminate()
        sim.communicate()


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serial", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_probe_json_prints_count_readings_and_reports_bad_frames(sds011: Path) -> None:
    result = gateway("probe", str(sds011), "--protocol", "sds011", "--count", "6", "--json")
    assert result.returncode == 0, result.stderr
    readings = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(readings) == 6
    assert {r["quantity"] for r in readings} == {"pm2_5", "pm10"}
    assert all(set(r) == {"ts_ms", "quantity", "value", "unit"} and r["unit"] == "ug/m3" for r in readings)
    assert "ChecksumMismatch" in result.stderr


@pytest.mark.slow
def test_probe_query_mode_polls_a_sensor_that_does_not_stream(sds011: Path) -> None:
    quiet = gateway("probe", str(sds011), "--protocol", "sds011", "--query", "--count", "2", "--json")
    assert quiet.returncode == 0, quiet.stderr
    # the sensor was left in query mode: without --query nothing arrives before the timeout
    silent = gateway("probe", str(sds011), "--protocol", "sds011", "--count", "1", "--timeout", "1.5")
    assert silent.returncode == 1
    assert "only 0 of 1" in silent.stderr


@pytest.mark.slow
def test_sniff_dumps_the_bytes_with_timestamps(sds011: Path) -> None:
    result = gateway("sniff", str(sds011), "--duration", "1.5", "--json")
    assert result.returncode == 0, result.stderr
    chunks = [json.loads(line) for line in result.stdout.splitlines()]
    data = bytes.fromhex("".join(c["hex"] for c in chunks))
    assert b"\xaa\xc0" in data
    assert all(isinstance(c["ts_ms"], int) for c in chunks)


@pytest.mark.parametrize("module", ["nmea_station", "sds011", "pms5003", "wxt", "line_sensor"])
def test_every_simulator_documents_its_options(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"hil.sims.{module}", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for option in ("--link", "--rate", "--garbage-every", "--bad-every", "--silence-every", "--hangup-every"):
        assert option in result.stdout
    assert '{"sentences": N, "readings": M, "bad": B}' in result.stdout


def read_until_hangup(port: serial.Serial) -> bytes:
    received = b""
    try:
        while chunk := port.read(port.in_waiting or 1):
            received += chunk
    except serial.SerialException:
        return received
    pytest.fail("no hangup within the read timeout")


def test_hangup_every_n_frames_replugs_at_the_same_link(tmp_path: Path) -> None:
    link = tmp_path / "ttyWX"
    command = [sys.executable, "-m", "hil.sims.nmea_station", "--link", str(link), "--rate", "50"]
    sim = subprocess.Popen([*command, "--hangup-every", "5"], stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        sim.stdout.readline()
        first = link.resolve()
        with serial.Serial(str(link), 9600, timeout=5) as port:
            received = read_until_hangup(port)
        assert received.count(b"\r\n") == 4  # four whole sentences, then half of the fifth
        assert not received.endswith(b"\r\n")
        with serial.Serial(str(link), 9600, timeout=5) as port:
            assert port.read_until(b"\n").startswith(b"$WI")
        assert link.resolve() != first
    finally:
        sim.terminate()
        out, _ = sim.communicate()
    assert json.loads(out.splitlines()[-1])["bad"] >= 1


@pytest.mark.slow
def test_probe_tells_a_missing_port_from_one_the_agent_holds(sds011: Path, tmp_path: Path) -> None:
    missing = gateway("probe", str(tmp_path / "ttyUSB9"), "--protocol", "sds011", "--count", "1")
    assert missing.returncode == 1
    assert "does not exist: is the adapter plugged in?" in missing.stderr and "agent" not in missing.stderr
    with serial.Serial(str(sds011), exclusive=True):  # the running agent opens its ports like this
        held = gateway("probe", str(sds011), "--protocol", "sds011", "--count", "1")
    assert held.returncode == 1
    assert "held by another process, normally the running agent" in held.stderr
    assert "gateway watch" in held.stderr


@pytest.mark.slow
def test_probe_with_the_wrong_protocol_counts_the_bytes_that_did_arrive(sds011: Path) -> None:
    result = gateway("probe", str(sds011), "--protocol", "pms5003", "--count", "1", "--timeout", "1.5")
    assert result.returncode == 1
    assert re.search(
        r"only 0 of 1 readings within 1.5 s; \d+ bytes arrived but no pms5003 frame", result.stderr
    )
    assert f"gateway serial sniff {sds011}" in result.stderr
