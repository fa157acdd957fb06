"""The demo: the whole data path on loopback, with a broker outage in the middle (`gateway demo`, `make demo`).

Children: Mosquitto on a free port, one simulator per configured sensor, the reference receiver and the
agent running config/example.toml (ports and paths redirected into a scratch directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import signing_key, tomlwriter
from gateway.config import EXAMPLE_CONFIG, parse_config
from gateway.control import query_status
from hil.broker import Mosquitto, free_port
from hil.children import ChildProcesses
from kernel.errors import GatewayError

#: simulator module per serial protocol: each counts exactly the valid readings it wrote
SERIAL_SIMULATORS = {
    "nmea": "hil.sims.nmea_station",
    "sds011": "hil.sims.sds011",
    "pms5003": "hil.sims.pms5003",
    "wxt": "hil.sims.wxt",
    "regex": "hil.sims.line_sensor",
}
#: windows are shortened so that several close within a short demo (a real config uses minutes)
DEMO_WINDOW_S = 10.0
DEMO_ALLOWED_LATENESS_S = 2.0
#: how long the receiver and the agent may take to start: under qemu-user emulation (arm64 on x86_64)
#: the children took 22 s to more than 30 s, so the phases are timed from the agent being up
CHILD_START_TIMEOUT_S = 180.0
#: the LoRa packet forwarder sends this many uplinks (genuine ones plus duplicates, replays, bad CRCs)
LORA_UPLINKS = 100_000


@dataclass
class Snapshot:
    """What the live view shows."""

    elapsed_s: float = 0.0
    phase: str = "starting"
    produced: int = 0
    committed: int = 0
    delivered: int = 0
    verified: int = 0
    rejected: int = 0
    duplicates: int = 0
    stored: int = 0
    uplink: str = "-"
    extra: dict[str, Any] = field(default_factory=dict)


class Demo:
    """Runs the demo for `duration_s`; `run()` returns the final JSON-able summary."""

    def __init__(
        self, duration_s: float, workdir: Path, rate_hz: float, config_path: Path = EXAMPLE_CONFIG
    ) -> None:
        self.duration_s = duration_s
        self.workdir = workdir
        self.rate_hz = rate_hz
        self.config_path = config_path
        self.children = ChildProcesses(workdir)
        #: (child name, sensor id) of each serial simulator: they count every reading they write
        self.sims: list[tuple[str, str]] = []
        self.modbus_buses: dict[str, dict[str, Any]] = {}
        #: sensors uploading windows only: the receiver holds their readings as window counts
        self.windowed_only: set[str] = set()
        self._lora_port: int | None = None
        self.broker = Mosquitto(workdir / "broker")
        self.agent_config = workdir / "agent.toml"
        self.receiver_stats = workdir / "receiver-stats.json"
        self.receiver_db = workdir / "receiver.db"
        self.last_status: dict[str, Any] = {}

    def _spawn(self, name: str, args: list[str], *, pipe: bool = False) -> str:
        self.children.start(name, *args, pipe=pipe, cwd=self.workdir)
        return name

    def prepare(self) -> None:
        """Keys, broker, simulators, the agent's config; then the receiver and the agent."""
        raw = tomllib.loads(self.config_path.read_text())
        gateway_id = raw["gateway_id"]
        private, public = signing_key.generate_keypair(self.workdir / "keys")
        receiver_keys = self.workdir / "receiver-keys"
        receiver_keys.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(
            public, receiver_keys / f"{gateway_id}.pem"
        )  # the backend registers the gateway's key
        self.broker.start()
        raw["key_file"] = str(private)
        raw["state_dir"] = str(self.workdir / "state")
        raw.setdefault("uplink", {}).setdefault("mqtt", {}).update(
            host="127.0.0.1", port=self.broker.port, tls=False
        )
        raw["batching"] = {**raw.get("batching", {}), "max_delay_s": 2.0}
        raw.setdefault("logging", {})["format"] = "json"
        for sensor in raw.get("sensors", []):
            sensor.pop("max_delay_s", None)  # the demo's short run: every sensor on the 2-s budget
            self._redirect(sensor)
            self._shorten_windows(sensor)
        self._start_modbus_slaves()
        self.agent_config.write_text(tomlwriter.dumps(raw))
        parse_config(tomllib.loads(self.agent_config.read_text()))  # fail here, not in the child
        self._spawn(
            "receiver",
            ["-m", "gateway", "receiver", "--broker", f"127.0.0.1:{self.broker.port}", "--keys", str(receiver_keys),
             "--db", str(self.receiver_db), "--stats-file", str(self.receiver_stats)],
        )  # fmt: skip
        self._wait_for_receiver_session()
        self._spawn("agent", ["-m", "gateway", "run", "--config", str(self.agent_config)])

    def _wait_for_receiver_session(self, timeout_s: float = CHILD_START_TIMEOUT_S) -> None:
        """The backend's persistent session must exist before the first batch is published: a broker
        drops QoS 1 messages that no session subscribed to (docs/decisions.md)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.receiver_statistics().get("connected") is True:
                return
            time.sleep(0.1)
        raise GatewayError(f"the receiver did not connect within {timeout_s:g} s; see receiver.log")

    def _redirect(self, sensor: dict[str, Any]) -> None:
        """Point a configured sensor at a simulator started for it (or disable it when there is none)."""
        if "serial" in sensor and sensor["serial"].get("protocol", "nmea") in SERIAL_SIMULATORS:
            self._serial_simulator(sensor)
        elif "modbus" in sensor and "host" in sensor["modbus"]:
            self.modbus_buses.setdefault(
                f"{sensor['modbus']['host']}:{sensor['modbus'].get('tcp_port', 502)}", {}
            )[sensor["id"]] = sensor
        elif "lorawan" in sensor:
            self._packet_forwarder(sensor)
        else:
            sensor["enabled"] = False

    def _shorten_windows(self, sensor: dict[str, Any]) -> None:
        """Windows of DEMO_WINDOW_S; remember the sensors whose readings travel only inside windows."""
        windows = sensor.get("windows")
        if windows is None:
            return
        windows.update(length_s=DEMO_WINDOW_S, allowed_lateness_s=DEMO_ALLOWED_LATENESS_S)
        if windows.get("upload", "windows") == "windows":
            self.windowed_only.add(sensor["id"])

    def _serial_simulator(self, sensor: dict[str, Any]) -> None:
        section = sensor["serial"]
        link = self.workdir / f"tty-{sensor['id']}"
        protocol = section.get("protocol", "nmea")
        module = SERIAL_SIMULATORS[protocol]
        args = ["-m", module, "--link", str(link), "--rate", str(self.rate_hz)]
        if protocol == "wxt" and section.get("polling", {}).get("mode") == "query":
            args.append("--polled")  # a polled WXT has no command that switches it: start it so
        self.children.ready(child := self._spawn(f"sim-{sensor['id']}", args, pipe=True))
        section["port"] = str(link)
        self.sims.append((child, sensor["id"]))

    def _start_modbus_slaves(self) -> None:
        """One simulated Modbus TCP server per configured bus, serving each sensor's profile at its unit id."""
        for number, bus in enumerate(self.modbus_buses.values()):
            args = ["-m", "hil.sims.modbus_slave", "--tcp", "127.0.0.1:0"]
            for sensor in bus.values():
                args += ["--slave", f"{sensor['modbus']['unit']}:{sensor['modbus']['profile']}"]
            ready = self.children.ready(self._spawn(f"modbus-{number}", args, pipe=True))
            host, _, port = ready["tcp"].rpartition(":")
            for sensor in bus.values():
                sensor["modbus"].update(host=host, tcp_port=int(port))

    def _packet_forwarder(self, sensor: dict[str, Any]) -> None:
        """All LoRaWAN sensors listen on one local UDP port, fed by one packet-forwarder emulator."""
        if self._lora_port is None:
            self._lora_port = free_port()
            interval = str(round(1.0 / self.rate_hz, 3))
            target = f"127.0.0.1:{self._lora_port}"
            self._spawn(
                "packet-forwarder",
                [
                    "-m",
                    "hil.sims.packet_forwarder",
                    "--target",
                    target,
                    "--uplinks",
                    str(LORA_UPLINKS),
                    "--interval",
                    interval,
                ],
            )
        sensor["lorawan"]["listen"] = f"127.0.0.1:{self._lora_port}"

    def snapshot(self, started: float, phase: str) -> Snapshot:
        """Collect the counters of every child."""
        snap = Snapshot(elapsed_s=time.monotonic() - started, phase=phase)
        with contextlib.suppress(GatewayError):
            self.last_status = asyncio.run(query_status(self._state_dir() / "control.sock", timeout_s=1.0))
        status = self.last_status
        # the same count as the final line's: readings of the sensors whose simulators count what they send
        counted = {sensor for _child, sensor in self.sims}
        snap.produced = sum(n for sensor, n in (status.get("produced") or {}).items() if sensor in counted)
        store = status.get("store") or {}
        snap.committed = int(store.get("committed", 0))
        uplink = status.get("uplink") or {}
        snap.delivered = int(uplink.get("readings_acked", 0))
        snap.uplink = str(uplink.get("state", "-"))
        received = self.receiver_statistics()
        snap.verified = received.get("verified", 0)
        snap.rejected = received.get("rejected", 0)
        snap.duplicates = received.get("duplicates_dropped", 0)
        snap.stored = received.get("readings_stored", 0)
        return snap

    def receiver_statistics(self) -> dict[str, Any]:
        """The receiver's statistics file ({} before it wrote one)."""
        try:
            stats: dict[str, Any] = json.loads(self.receiver_stats.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return stats

    def stored_counted(self) -> int:
        """Readings at the receiver from the sensors whose simulators count every reading they send.

        A windows-only sensor's readings are the counts (valid + NaN) of its latest window revisions,
        plus those too late for any window, which travel raw.
        """
        counted = [sensor for _child, sensor in self.sims]
        windowed = [sensor for sensor in counted if sensor in self.windowed_only]
        raw = self._receiver_count("SELECT count(*) FROM readings WHERE sensor IN ({})", counted)
        in_windows = self._receiver_count(
            "SELECT total(count + nan_count) FROM windows WHERE sensor IN ({})", windowed
        )
        return raw + in_windows

    def windows_stored(self) -> int:
        """Window rows at the receiver (the latest revision of each window)."""
        return self._receiver_count("SELECT count(*) FROM windows", [])

    def _receiver_count(self, query: str, sensors: list[str]) -> int:
        """One number from the receiver's database; `{}` in `query` takes placeholders for `sensors`
        (SQLite's `IN ()` matches nothing, so an empty list counts 0)."""
        if not self.receiver_db.exists():
            return 0
        with contextlib.closing(sqlite3.connect(self.receiver_db, timeout=5)) as db:
            try:
                return int(db.execute(query.format(",".join("?" * len(sensors))), sensors).fetchone()[0])
            except sqlite3.OperationalError:  # the receiver has not created its tables yet
                return 0

    def _state_dir(self) -> Path:
        return self.workdir / "state"

    def run(self, show: Callable[[Snapshot], None]) -> dict[str, int]:
        """The whole demo; `show` is called about twice a second with the live counters.

        Raises GatewayError when the run proves nothing: no reading produced, or the agent not
        running through the whole broker outage."""
        try:
            self.prepare()
            self._wait_for_agent()
            started = time.monotonic()  # phases count from the agent being up, not from the launch
            outage = (self.duration_s / 3, 2 * self.duration_s / 3)
            phase = "running"
            through_outage = True
            while (elapsed := time.monotonic() - started) < self.duration_s:
                if phase == "running" and elapsed >= outage[0]:
                    self.broker.stop()
                    phase = "broker down"
                elif phase == "broker down" and elapsed >= outage[1]:
                    self.broker.start()
                    phase = "draining backlog"
                through_outage = through_outage and (phase != "broker down" or self._agent_running())
                show(self.snapshot(started, phase))
                time.sleep(0.5)
            if not self.broker.running:
                self.broker.start()
            produced = self._stop_simulators()
            proves_something(produced, through_outage)
            snap = self._wait_for_receiver(produced, started, show)
            return self._finish(produced, snap)
        finally:
            self.children.stop_all(graceful=True)
            self.broker.stop()

    def _agent_running(self) -> bool:
        return self.children.running("agent")

    def _wait_for_agent(self) -> None:
        """Until the agent answers on its control socket (its drivers and uplink have started)."""
        deadline = time.monotonic() + CHILD_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self._agent_running():
                raise GatewayError("the agent exited during start-up; see agent.log")
            with contextlib.suppress(GatewayError):
                if asyncio.run(query_status(self._state_dir() / "control.sock", timeout_s=1.0)):
                    return
            time.sleep(0.2)
        raise GatewayError(f"the agent did not answer within {CHILD_START_TIMEOUT_S:g} s; see agent.log")

    def _stop_simulators(self) -> int:
        produced = 0
        for child, _sensor in self.sims:
            out = self.children.terminate(child)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            produced += int(json.loads(lines[-1])["readings"]) if lines else 0
        return produced

    def _wait_for_receiver(self, produced: int, started: float, show: Callable[[Snapshot], None]) -> Snapshot:
        deadline = time.monotonic() + 30.0
        snap = self.snapshot(started, "final drain")
        while self.stored_counted() < produced and time.monotonic() < deadline:
            show(snap)
            time.sleep(0.5)
            snap = self.snapshot(started, "final drain")
        show(snap)
        return snap

    def _finish(self, produced: int, snap: Snapshot) -> dict[str, int]:
        self.children.terminate("agent")
        self.children.terminate("receiver")
        stored = self.stored_counted()
        final = self.receiver_statistics()
        return {
            "produced": produced,
            "committed": snap.committed,
            "delivered": snap.delivered,
            "verified": int(final["verified"]),
            "rejected": int(final["rejected"]),
            "duplicates_dropped": int(final["duplicates_dropped"]),
            "windows": self.windows_stored(),
            "lost": produced - stored,
        }


def proves_something(produced: int, agent_ran_through_outage: bool) -> None:
    """A demo that produced nothing, or whose outage the agent did not live through, shows nothing:
    "lost": 0 would be true and meaningless."""
    if produced == 0:
        raise GatewayError("the simulators produced no reading: the demo shows nothing")
    if not agent_ran_through_outage:
        raise GatewayError("the agent was not running through the broker outage; see agent.log")


def default_workdir() -> Path:
    """A fresh scratch directory for one demo run (short path: unix sockets have a length limit)."""
    return Path(tempfile.mkdtemp(prefix="gw-demo-"))


def is_tty() -> bool:
    """Whether stdout is a terminal (live view) or a pipe/CI log (plain progress lines)."""
    return os.isatty(sys.stdout.fileno())
