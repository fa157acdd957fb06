"""Technicians and the running agent: status, watch, flush, selftest and a Modbus read through its socket.

One agent runs for the module, with real parts: an SDS011 simulator on a pty, a second SDS011 on a pty
this test writes itself (silent until a test makes it talk), two Modbus RTU slaves on a pty, and a real
Mosquitto. Every command is run as a child process, as a technician would run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import Processes, wait_until

from drivers.serial import sds011
from gateway import signing_key, tomlwriter
from gateway.control import query_status, request
from hil.broker import Mosquitto, free_port
from kernel.errors import GatewayError


@dataclass
class Rig:
    """The running agent and what it talks to."""

    config: Path
    state: Path
    broker: Mosquitto
    processes: Processes
    quiet_master: int
    #: HOST:PORT of the Modbus TCP slave
    tcp: str

    def gateway(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """`gateway ARGS --config <the agent's config>` as a child process."""
        return subprocess.run(
            [sys.executable, "-m", "gateway", *args, "--config", str(self.config)],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip

    def status(self) -> dict[str, object]:
        try:
            return asyncio.run(query_status(self.state / "control.sock", timeout_s=2.0))
        except GatewayError:
            return {}

    def sensor(self, sensor: str) -> dict[str, object]:
        sensors = self.status().get("sensors") or {}
        assert isinstance(sensors, dict)
        view: dict[str, object] = sensors.get(sensor, {})
        return view


class QuietSensor:
    """An SDS011 on a pty whose frames this test writes: silent until `talk`, silent again after `hush`."""

    def __init__(self, master: int) -> None:
        self.master = master
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def talk(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def hush(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _write(self) -> None:
        while not self._stop.wait(0.2):
            os.write(self.master, sds011.data_frame(5.0, 8.0))


#: the packet-forwarder emulator's demo device (config/example.toml, never a real device's keys)
LORA_DEVICE = {
    "codec": "dl_mbx",
    "abp": {"devaddr": "26011f01", "nwkskey": "2b7e151628aed2a6abf7158809cf4f3c",
            "appskey": "000102030405060708090a0b0c0d0e0f"},
}  # fmt: skip


def _config(tmp_path: Path, port: int, dust: Path, quiet: Path, rtu: Path, lora_port: int, tcp: str) -> Path:
    private, _public = signing_key.generate_keypair(tmp_path / "keys")
    serial = {"baud": 9600, "protocol": "sds011"}
    modbus = {"port": str(rtu), "baud": 19200, "poll_interval_s": 0.2, "timeout_s": 0.5}
    config = {
        "gateway_id": "gw-ctl",
        "key_file": str(private),
        "state_dir": str(tmp_path / "state"),
        "batching": {"slice_s": 1.0},
        "buffer": {"commit_interval_s": 0.2},
        "clock": {"check": "off"},  # CI machines rarely run NTP: the clock check has its own unit test
        "uplink": {"mqtt": {"host": "127.0.0.1", "port": port}, "ack_timeout_s": 3.0},
        "logging": {"format": "json", "level": "debug"},
        "sensors": [
            {"id": "dust-1", "driver": "serial", "stale_after_s": 5, "resolution": {"pm2_5": 0.1},
             "serial": {"port": str(dust), **serial}},
            {"id": "quiet-1", "driver": "serial", "stale_after_s": 2, "serial": {"port": str(quiet), **serial}},
            {"id": "meter-1", "driver": "modbus", "stale_after_s": 10,
             "modbus": {"unit": 1, "profile": "sdm630", **modbus}},
            {"id": "level-1", "driver": "modbus", "stale_after_s": 10,
             "modbus": {"unit": 4, "profile": "radar_level", **modbus}},
            {"id": "quay-level-1", "driver": "modbus", "stale_after_s": 10,
             "modbus": {"host": tcp.rpartition(":")[0], "tcp_port": int(tcp.rpartition(":")[2]), "unit": 2,
                        "profile": "radar_level", "poll_interval_s": 0.2}},
            {"id": "warnow-level-1", "driver": "lorawan", "stale_after_s": 60,
             "lorawan": {**LORA_DEVICE, "listen": f"127.0.0.1:{lora_port}"}},
        ],
    }  # fmt: skip
    path = tmp_path / "agent.toml"
    path.write_text(tomlwriter.dumps(config))
    return path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp_path = tmp_path_factory.mktemp("control")
    processes = Processes(tmp_path)
    port = free_port()
    broker = Mosquitto(tmp_path / "broker", port=port)
    broker.start()
    master, slave = os.openpty()
    quiet = tmp_path / "ttyQUIET"
    quiet.symlink_to(os.ttyname(slave))
    dust, rtu = tmp_path / "ttyDUST", tmp_path / "ttyRTU"
    try:
        processes.start_ready("dust", "-m", "hil.sims.sds011", "--link", str(dust), "--rate", "5")
        slaves = ("--slave", "1:sdm630", "--slave", "4:radar_level")
        processes.start_ready("modbus", "-m", "hil.sims.modbus_slave", "--rtu", str(rtu), "--baud", "19200",
                              *slaves)  # fmt: skip
        tcp = processes.start_ready("modbus-tcp", "-m", "hil.sims.modbus_slave", "--tcp", "127.0.0.1:0",
                                    "--slave", "2:radar_level")["tcp"]  # fmt: skip
        lora_port = free_port()
        config = _config(tmp_path, port, dust, quiet, rtu, lora_port, str(tcp))
        processes.start("agent", "-m", "gateway", "run", "--config", str(config))
        processes.start("forwarder", "-m", "hil.sims.packet_forwarder", "--target", f"127.0.0.1:{lora_port}",
                        "--uplinks", "100000", "--interval", "0.2")  # fmt: skip
        rig = Rig(config, tmp_path / "state", broker, processes, master, str(tcp))
        wait_until(lambda: rig.sensor("dust-1").get("state") == "ok", 30, "dust-1 delivering")
        wait_until(lambda: rig.sensor("level-1").get("state") == "ok", 30, "the Modbus slaves delivering")
        wait_until(lambda: rig.sensor("warnow-level-1").get("state") == "ok", 30, "the LoRaWAN device heard")
        yield rig
    finally:
        processes.stop_all()
        broker.stop()
        os.close(master)
        os.close(slave)


def _sensor_rows(table: str, sensor: str) -> str:
    """The table's row of `sensor` and the continuation rows under it."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if re.search(rf"│ {re.escape(sensor)}\s", line))
    rows = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("│  "):
            break
        rows.append(line)
    return "\n".join(rows)


def test_the_status_table_shows_a_silent_sensor_as_stale_with_the_reason(rig: Rig) -> None:
    wait_until(lambda: rig.sensor("quiet-1").get("state") == "stale", 20, "quiet-1 stale")
    result = rig.gateway("status")
    assert result.returncode == 0, result.stderr
    quiet = _sensor_rows(result.stdout, "quiet-1")
    assert "stale" in quiet and "no reading for" in quiet and "stale after 2 s" in quiet
    dust = _sensor_rows(result.stdout, "dust-1")
    assert " ok " in dust and "pm2_5=" in dust
    assert re.search(r"level-1 .*alive", result.stdout), "the Modbus breaker state"
    assert "kid " in result.stdout and str(rig.config) in result.stdout


@pytest.mark.slow
def test_watch_streams_one_sensor_while_the_agent_keeps_delivering_upstream(rig: Rig) -> None:
    before = rig.status()["uplink"]
    assert isinstance(before, dict)
    result = rig.gateway("watch", "dust-1", "--json", "--count", "12")
    assert result.returncode == 0, result.stderr
    readings = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(readings) == 12
    assert {r["sensor"] for r in readings} == {"dust-1"}
    assert {r["quantity"] for r in readings} == {"pm2_5", "pm10"}
    timestamps = [r["ts_ms"] for r in readings]
    assert timestamps == sorted(timestamps)

    def acked_more() -> bool:
        uplink = rig.status()["uplink"]
        return isinstance(uplink, dict) and uplink["readings_acked"] > before["readings_acked"]

    wait_until(acked_more, 15, "the agent still delivering while watched")
    assert rig.status()["agent"]["watchers"] == 0  # type: ignore[index]


@pytest.mark.slow
def test_a_modbus_read_through_the_agent_is_queued_between_its_polls(rig: Rig) -> None:
    before = rig.status()["drivers"]
    sock = rig.state / "control.sock"

    async def reads() -> list[list[int]]:
        answers = []
        for _ in range(15):
            # holding 1..5 of the radar: distance, hole, level, hole, installation height (5.00 m = 500)
            answer = await request(sock, "modbus_read", timeout_s=10, sensor="level-1", unit=4,
                                   kind="holding", address=1, count=5)  # fmt: skip
            answers.append(answer["words"])
        return answers

    answers = asyncio.run(reads())
    assert all(len(words) == 5 and words[4] == 500 for words in answers), answers
    after = rig.status()["drivers"]
    bus = next(name for name in after if name.startswith("modbus:"))  # type: ignore[union-attr]
    slaves_before = {s["sensor"]: s for s in before[bus]["slaves"]}  # type: ignore[index]
    for slave in after[bus]["slaves"]:  # type: ignore[index]
        assert slave["polls_failed"] == 0, slave
        assert slave["polls_ok"] > slaves_before[slave["sensor"]]["polls_ok"], "polling went on"
    # and the CLI's way to it
    cli = rig.gateway("modbus", "read", "--via-agent", "--serial", str(rig.config.parent / "ttyRTU"),
                      "--unit", "4", "--kind", "holding", "--address", "5", "--json")  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == {"address": 5, "value": 500}
    over_tcp = rig.gateway("modbus", "read", "--via-agent", "--tcp", rig.tcp, "--unit", "2", "--kind", "holding",
                           "--address", "1", "--count", "5", "--json")  # fmt: skip
    assert over_tcp.returncode == 0, over_tcp.stderr
    assert [json.loads(line)["value"] for line in over_tcp.stdout.splitlines()][4] == 500
    silent = rig.gateway("modbus", "read", "--via-agent", "--tcp", rig.tcp, "--unit", "9", "--kind", "holding",
                         "--address", "1", "--timeout", "0.3")  # fmt: skip
    assert silent.returncode == 2 and "no answer from unit 9 at address 1" in silent.stderr


@pytest.mark.slow
def test_the_last_uplinks_of_a_lorawan_device_come_from_the_agent_holding_the_udp_port(rig: Rig) -> None:
    result = rig.gateway("lorawan", "uplinks", "warnow-level-1", "--json")
    assert result.returncode == 0, result.stderr
    uplinks = [json.loads(line) for line in result.stdout.splitlines()]
    assert uplinks and {u["device"] for u in uplinks} == {"warnow-level-1"}
    counters = [u["fcnt"] for u in uplinks]
    assert counters == sorted(counters) and all(u["rssi"] < 0 for u in uplinks)
    table = rig.gateway("status").stdout
    assert re.search(
        r"│ warnow-level-1 +│ [0-9:]+ \(\d+ s ago\) +│ -[0-9.]+ dBm +│ -?[0-9.]+ dB +│ \d+ ", table
    ), table
    taken = rig.gateway("lorawan", "uplinks", "nobody")
    assert taken.returncode == 2 and "no sensor 'nobody'" in taken.stderr


@pytest.mark.slow
def test_serial_probe_on_the_agents_port_points_to_the_agent_and_reads_through_it(rig: Rig) -> None:
    dust = str(rig.config.parent / "ttyDUST")
    held = rig.gateway("serial", "probe", dust, "--protocol", "sds011", "--count", "1")
    assert held.returncode == 1
    assert f"held by another process, normally the running agent: read it through the agent: " \
           f"gateway serial probe {dust} --via-agent (or gateway watch dust-1)" in held.stderr  # fmt: skip
    through = rig.gateway("serial", "probe", dust, "--via-agent", "--count", "4", "--json")
    assert through.returncode == 0, through.stderr
    readings = [json.loads(line) for line in through.stdout.splitlines()]
    assert len(readings) == 4 and {r["quantity"] for r in readings} <= {"pm2_5", "pm10"}


def test_a_direct_modbus_read_on_the_agents_port_offers_the_way_through_it(rig: Rig) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "modbus", "read", "--serial", str(rig.config.parent / "ttyRTU"),
         "--baud", "19200", "--unit", "4", "--kind", "holding", "--address", "5"],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "GATEWAY_CONFIG": str(rig.config)},
    )  # fmt: skip
    assert result.returncode == 3
    assert "--via-agent" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_selftest_fails_on_a_silent_sensor_and_passes_once_it_talks(rig: Rig) -> None:
    wait_until(lambda: rig.sensor("quiet-1").get("state") == "stale", 20, "quiet-1 stale")
    failing = rig.gateway("selftest", "--json")
    assert failing.returncode == 1, failing.stderr
    lines = [json.loads(line) for line in failing.stdout.splitlines()]
    verdicts = {line["check"]: line["passed"] for line in lines[:-1]}
    assert verdicts["sensor quiet-1"] is False
    assert verdicts["sensor dust-1"] and verdicts["uplink"] and verdicts["key"] and verdicts["disk"]
    assert verdicts["coder"]  # the compiled coder library of this install loads (docs/service.md)
    assert lines[-1]["failed"] == ["sensor quiet-1"]
    quiet = QuietSensor(rig.quiet_master)
    quiet.talk()
    try:
        wait_until(lambda: rig.sensor("quiet-1").get("state") == "ok", 20, "quiet-1 talking")
        passing = rig.gateway("selftest")
        assert passing.returncode == 0, passing.stdout + passing.stderr
        assert "all" in passing.stdout and "checks passed" in passing.stdout
    finally:
        quiet.hush()


def test_a_one_megabyte_request_line_is_refused_and_the_agent_answers_on(rig: Rig) -> None:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(rig.state / "control.sock"))
        with contextlib.suppress(BrokenPipeError):  # the agent may close before the whole line is sent
            client.sendall(b'{"request": "status", "pad": "' + b"x" * (1 << 20) + b'"}\n')
        answer = client.makefile("rb").readline()
    assert json.loads(answer)["error"]["code"] == "too_long"
    assert rig.status().get("gateway_id") == "gw-ctl"
    assert "Traceback" not in rig.processes.log("agent")


@pytest.mark.slow
def test_flush_reconnects_the_uplink_now_instead_of_after_its_backoff(rig: Rig) -> None:
    """It stops and restarts the broker: the other tests of the module do not depend on the uplink after it."""
    rig.broker.stop()

    def backing_off() -> dict[str, object] | None:
        for line in reversed(rig.processes.log("agent").splitlines()):
            if '"task": "uplink"' in line and "retry_in_s" in line:
                entry: dict[str, object] = json.loads(line)
                return entry if float(entry["retry_in_s"]) >= 4.0 else None  # type: ignore[arg-type]
        return None

    failure = wait_until(backing_off, 30, "the uplink backing off for 4 s or more")
    rig.broker.start()
    result = rig.gateway("flush", "--wait", "10", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["reconnecting"] is True and answer["drained"] is True
    failed_at = datetime.fromisoformat(str(failure["timestamp"]))
    connected = [
        json.loads(line) for line in rig.processes.log("agent").splitlines()
        if '"uplink connected"' in line and datetime.fromisoformat(json.loads(line)["timestamp"]) > failed_at
    ]  # fmt: skip
    assert connected, "the uplink reconnected"
    # the supervisor alone would have tried again only retry_in_s after that failure
    backoff_ends = failed_at + timedelta(seconds=float(failure["retry_in_s"]))  # type: ignore[arg-type]
    assert datetime.fromisoformat(connected[0]["timestamp"]) < backoff_ends


@pytest.mark.slow
def test_selftest_with_the_agent_stopped_runs_the_drivers_itself(
    tmp_path: Path, processes: Processes
) -> None:
    port = free_port()
    dust, silent = tmp_path / "ttyDUST", tmp_path / "ttySILENT"
    processes.start_ready("dust", "-m", "hil.sims.sds011", "--link", str(dust), "--rate", "5")
    master, slave = os.openpty()
    silent.symlink_to(os.ttyname(slave))
    private, _ = signing_key.generate_keypair(tmp_path / "keys")
    serial = {"baud": 9600, "protocol": "sds011"}
    config = tmp_path / "agent.toml"
    config.write_text(tomlwriter.dumps({
        "gateway_id": "gw-off", "key_file": str(private), "state_dir": str(tmp_path / "state"),
        "clock": {"check": "off"}, "uplink": {"mqtt": {"host": "127.0.0.1", "port": port}, "ack_timeout_s": 3.0},
        "sensors": [
            {"id": "dust-1", "driver": "serial", "serial": {"port": str(dust), **serial}},
            {"id": "silent-1", "driver": "serial", "serial": {"port": str(silent), **serial}},
        ],
    }))  # fmt: skip
    gateway = [
        sys.executable,
        "-m",
        "gateway",
        "selftest",
        "--config",
        str(config),
        "--json",
        "--timeout",
        "3",
    ]
    try:
        with Mosquitto(tmp_path / "broker", port=port):
            result = subprocess.run(gateway, capture_output=True, text=True, timeout=60, check=False)
            assert result.returncode == 1, result.stderr
            lines = [json.loads(line) for line in result.stdout.splitlines()]
            summary = lines[-1]
            assert summary["mode"] == "agent stopped" and summary["failed"] == ["sensor silent-1"]
            verdicts = {line["check"]: line for line in lines[:-1]}
            assert verdicts["sensor dust-1"]["passed"] and verdicts["uplink"]["passed"]
            assert "no reading within 3 s" in verdicts["sensor silent-1"]["detail"]
        no_broker = subprocess.run(gateway, capture_output=True, text=True, timeout=60, check=False)
        uplink = next(json.loads(line) for line in no_broker.stdout.splitlines() if '"uplink"' in line)
        assert uplink["passed"] is False and "cannot connect" in uplink["detail"]
    finally:
        os.close(master)
        os.close(slave)
