"""Bytes on the air per gateway per day: the agent, a TLS Mosquitto and the receiver on loopback.

Everything is real: the agent (`gateway run`) reads ten regex line sensors on pty pairs, whose lines
replay the real series of ../shared/data/sensor-series (air pressure, dew point, IR surface
temperature; sensor i starts i x 2,000 lines into each file, a missing value is a missing reading),
and publishes over MQTT+TLS (the loopback CA of hil/tls.py) to Mosquitto, from which the reference
receiver stores and verifies every batch. Between the agent and the broker's TLS listener sits a
counting TCP relay (`Relay`): it counts the payload bytes of the agent's connection both ways, and reads
the segments of that same connection from the kernel (TCP_INFO on the relay's accepted socket:
tcpi_segs_in/out). Its listening socket announces an MSS of 1,448 bytes (an LTE link's 1,500-byte MTU
minus IPv4 and TCP with timestamps), so the agent's batches are cut into the segments a real link
carries. On the air per segment: its payload (TLS is real, records and tags included) plus 52 bytes of
IPv4/TCP headers. The 22 bytes per TLS record the issue estimated are not added: the relay sees real
TLS records.

Time is compressed by a factor k per profile: sensor intervals, max_delay_s, the NAT timeout (and so
the keepalives, in whole compressed seconds: 5 s = 270 s real at k = 54), the cut interval and the
sensors' time resolution are all divided by k, so that every batch holds the readings of the real
profile in the same series and with the same timestamp steps (counted in time-resolution units); the
store's 1 s group commit is not compressed. Per day = bytes in a steady window x 86,400 / (k x window),
plus one full connect per day when the link stayed up through the window (measured first, with a
second, TLS-resumed connect: `connect_bytes_full`, `connect_bytes_resumed`). The window runs from just
after one batch reached the receiver to just after a later one did (at least 90 % of the profile's
window), so it holds whole batch cycles. A cut is a reset from the relay (a real NAT drops silently).

Profiles: (a) 10 sensors x 3 quantities at 1/min, max_delay_s 900, k = 54; (b) the same at 1 Hz,
max_delay_s 60, k = 10; (c) no sensors, NAT timeout 300 s, k = 54, the default 6-h heartbeat
(uplink.heartbeat_s, compressed by 720 to 30 s; per day = one heartbeat cycle x 86,400 / 21,600); (d) profile (a) with the relay
cutting the connection every 10 min (compressed: 11.1 s). The ThingsBoard figure publishes the same
readings as ThingsBoard IoT Gateway JSON telemetry (one message per sensor and reading time) with QoS 1
over the same relay and TLS, paced so each message travels alone as it would at 1/min.

Prints informational lines, then ONE JSON object as the last line. `AIR_BENCH_PROFILES=a,d` runs only
those profiles (the JSON then lacks the others' keys); `AIR_BENCH_TRACE=FILE` writes every read of the
relay (time, direction, bytes) to FILE, to see what a batch cycle or a reconnect is made of.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway import signing_key, tomlwriter, wire  # noqa: E402
from gateway.config import UplinkConfig  # noqa: E402
from hil.broker import Mosquitto  # noqa: E402
from hil.sims.pty_port import PtyPort  # noqa: E402
from hil.tls import loopback_certificate  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "sensor-series"
#: regex group -> (file, quantity, unit, resolution)
QUANTITIES = {
    "p": ("Air-pressure", "air_pressure", "kPa", 1e-5),
    "d": ("Dew-point-temp", "dew_point", "Cel", 0.01),
    "t": ("IR-bio-temp", "surface_temperature", "Cel", 0.01),
}
PATTERN = r"^P=(?P<p>[-0-9.]+)?;D=(?P<d>[-0-9.]+)?;T=(?P<t>[-0-9.]+)?$"
SENSORS = 10
SENSOR_OFFSET_LINES = 2_000
#: an LTE link: 1,500-byte MTU minus 20 (IPv4) and 32 (TCP with timestamps) header bytes
MSS = 1_448
HEADER_BYTES = 52
DAY_S = 86_400
#: after a batch reached the receiver, its PUBACK and TCP ACKs are done within this (compressed)
SETTLE_S = 0.3
#: the agent's default heartbeat (uplink.heartbeat_s), compressed like every other period
HEARTBEAT_S = float(UplinkConfig.model_fields["heartbeat_s"].default)
SAMPLE_S = 0.05


@dataclass(frozen=True)
class Profile:
    """One measured situation, in real (uncompressed) units, and how much it is compressed."""

    name: str
    k: float
    interval_s: float | None  # per sensor; None: an idle gateway without sensors
    max_delay_s: float
    nat_timeout_s: float
    #: the steady window spans at least this (real s), between two batch arrivals when there are batches
    window_s: float
    cut_every_s: float | None = None
    #: how much the heartbeat period is compressed, when not by k: an idle gateway's link is closed
    #: between heartbeats (connect on demand), so the silence costs nothing and one cycle's bytes
    #: (connect, heartbeat batch, acknowledgement, idle until the close) are what a day repeats
    heartbeat_k: float | None = None

    @property
    def heartbeat_s(self) -> float:
        """The heartbeat period the agent is given (compressed s)."""
        return HEARTBEAT_S / (self.heartbeat_k or self.k)


#: k = 54 for the 300-s NAT timeout: the agent's keepalives are whole seconds, and 300 / 54 s gives
#: exactly 5 s = 270 s real (TCP) and 20 s = 1,080 s real (MQTT), as on a real gateway; k = 60 gave
#: 4 s = 240 s and 16 s = 960 s, 12 % more probes and, against 900-s batches, MQTT PINGs a real
#: gateway never sends (measured: one PINGREQ/PINGRESP pair, 48 bytes + 4 segments, per 30 min)
PROFILES = (
    Profile("a", k=54, interval_s=60, max_delay_s=900, nat_timeout_s=300, window_s=1800),
    Profile("b", k=10, interval_s=1, max_delay_s=60, nat_timeout_s=300, window_s=300),
    # an idle gateway's traffic is its heartbeats: the window is one heartbeat cycle (drive()); the
    # keepalives keep k = 54 and the 6-h period becomes 30 s (at k = 54 it took 400 s, the run 423 s)
    Profile(
        "c", k=54, interval_s=None, max_delay_s=900, nat_timeout_s=300, window_s=HEARTBEAT_S, heartbeat_k=720
    ),
    # 1,800 s holds whole cycles of both the 900 s batches and the 600 s cuts
    Profile("d", k=54, interval_s=60, max_delay_s=900, nat_timeout_s=300, window_s=1800, cut_every_s=600),
)


# -- the counting relay ------------------------------------------------------------------------------


def tcp_segments(sock: socket.socket) -> tuple[int, int]:
    """(segments in, segments out) of a connected TCP socket, from Linux's struct tcp_info."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < 144:
        return 0, 0
    segs_out, segs_in = struct.unpack_from("II", info, 136)
    return segs_in, segs_out


def live_segments(sock: socket.socket, counts: Counts) -> int:
    """Segments both ways of a relayed connection, kept in `counts`; the last figure read once its
    socket is gone (a peer that closes at once can take the fd with it before the relay settles the
    connection: EBADF, which lost profile (c)'s whole heartbeat cycle in one run)."""
    try:
        seg_in, seg_out = tcp_segments(sock)
    except OSError:
        return counts.segments
    counts.segments = seg_in + seg_out
    return counts.segments


@dataclass
class Counts:
    """What crossed the relay: payload bytes from/to the agent, segments both ways, connections."""

    up: int = 0
    down: int = 0
    segments: int = 0
    connections: int = 0

    def on_air(self) -> int:
        """Payload plus IPv4/TCP headers."""
        return self.up + self.down + HEADER_BYTES * self.segments

    def minus(self, other: Counts) -> Counts:
        return Counts(
            self.up - other.up,
            self.down - other.down,
            self.segments - other.segments,
            self.connections - other.connections,
        )


class Relay:
    """A TCP relay in front of the broker's TLS listener that counts the agent's connection."""

    def __init__(self, target_port: int, trace: Path | None = None) -> None:
        self.target_port = target_port
        self._trace = trace.open("a") if trace is not None else None
        self.port = 0
        self.closed = Counts()
        self._live: dict[socket.socket, tuple[asyncio.StreamWriter, asyncio.StreamWriter, Counts]] = {}
        self._server: asyncio.Server | None = None
        #: set once the broker has sent the agent its first bytes
        self.answered = asyncio.Event()

    async def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS + 12)  # Linux subtracts timestamps
        listener.bind(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=listener)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def totals(self) -> Counts:
        """Everything so far, live connections included."""
        total = Counts(self.closed.up, self.closed.down, self.closed.segments, self.closed.connections)
        for sock, (_, _, counts) in self._live.items():
            total.up += counts.up
            total.down += counts.down
            total.segments += live_segments(sock, counts)
            total.connections += 1
        return total

    def cut(self) -> None:
        """Drop every live connection at once, as a carrier NAT or a radio loss does."""
        for sock in list(self._live):
            self._settle(sock)

    def _settle(self, sock: socket.socket) -> None:
        entry = self._live.pop(sock, None)
        if entry is None:
            return
        agent, broker, counts = entry
        self.closed.up += counts.up
        self.closed.down += counts.down
        self.closed.segments += live_segments(sock, counts)
        self.closed.connections += 1
        for writer in (agent, broker):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")._sock  # the real socket: TCP_INFO needs it
        try:
            b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        counts = Counts()
        self._live[sock] = (writer, b_writer, counts)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump(reader, b_writer, counts, "up", sock))
                tasks.create_task(self._pump(b_reader, writer, counts, "down", sock))
        except asyncio.CancelledError:  # the bench is over: a server callback has nobody to tell
            self._settle(sock)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        counts: Counts,
        direction: str,
        sock: socket.socket,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                setattr(counts, direction, getattr(counts, direction) + len(data))
                segs = live_segments(sock, counts)
                if self._trace is not None:
                    self._trace.write(f"{time.time():.3f} {direction} {len(data)} segs={segs}\n")
                    self._trace.flush()
                if direction == "down":
                    self.answered.set()
                writer.write(data)
                await writer.drain()
        self._settle(sock)


class Recorder:
    """Relay totals sampled every SAMPLE_S, to read the counts at any past moment."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.samples: list[tuple[float, Counts]] = []

    async def run(self) -> None:
        while True:
            self.samples.append((time.time(), self.relay.totals()))
            await asyncio.sleep(SAMPLE_S)

    def at(self, when: float) -> Counts:
        """The last sample taken at or before `when`."""
        best = self.samples[0][1]
        for t, counts in self.samples:
            if t > when:
                break
            best = counts
        return best


# -- sensors, agent, receiver ---------------------------------------------------------------------


def load_column(stem: str) -> list[str]:
    """The file's lines as text ("" for a missing value)."""
    return [line.strip().strip('"') for line in (DATA / f"{stem}.csv").read_text().splitlines()]


@dataclass
class Replay:
    """Lines the pty sensors write: the real series, sensor i offset by i x SENSOR_OFFSET_LINES."""

    columns: dict[str, list[str]]
    written_values: int = 0
    written_lines: list[int] = field(default_factory=lambda: [0] * SENSORS)

    def line(self, sensor: int) -> bytes:
        n = sensor * SENSOR_OFFSET_LINES + self.written_lines[sensor]
        values = {g: column[n % len(column)] for g, column in self.columns.items()}
        self.written_lines[sensor] += 1
        self.written_values += sum(1 for v in values.values() if v)
        return f"P={values['p']};D={values['d']};T={values['t']}\r\n".encode()


async def run_sensor(
    port: PtyPort, replay: Replay, sensor: int, interval_s: float, stop: asyncio.Event
) -> None:
    """Write one line every interval_s with a per-sensor phase (free-running sensors are not in step)."""
    await asyncio.sleep(interval_s * sensor / SENSORS)
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        await port.write(replay.line(sensor))
        n += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, start + n * interval_s - time.monotonic())):
                await stop.wait()


def sensor_config(i: int, link: Path, time_resolution_ms: int) -> dict[str, Any]:
    fields = {g: {"quantity": q, "unit": u} for g, (_, q, u, _) in QUANTITIES.items()}
    return {
        "id": f"post-{i:02d}",
        "driver": "serial",
        "time_resolution_ms": time_resolution_ms,
        "resolution": {q: r for _, q, _, r in QUANTITIES.values()},
        "serial": {"port": str(link), "protocol": "regex", "regex": {"pattern": PATTERN, "fields": fields}},
    }


@dataclass
class Bench:
    """The shared pieces: scratch folder, key, broker with TLS, relay, receiver."""

    workdir: Path
    broker: Mosquitto
    ca_file: Path
    receiver_db: Path
    receiver: subprocess.Popen[bytes] | None = None

    def agent_config(self, profile: Profile, gateway_id: str, links: list[Path], relay_port: int) -> Path:
        k = profile.k
        raw: dict[str, Any] = {
            "gateway_id": gateway_id,
            "key_file": str(self.workdir / "keys" / gateway_id / signing_key.PRIVATE_NAME),
            "state_dir": str(self.workdir / gateway_id),
            "clock": {"check": "off"},
            "logging": {"format": "json"},
            "uplink": {"mqtt": {"host": "127.0.0.1", "port": relay_port, "tls": True, "ca_file": str(self.ca_file)}},
            "sensors": [sensor_config(i, link, max(1, round(1000 / k))) for i, link in enumerate(links)],
        }  # fmt: skip
        budget_batching(raw, profile)
        path = self.workdir / f"{gateway_id}.toml"
        path.write_text(tomlwriter.dumps(raw))
        return path


def budget_batching(raw: dict[str, Any], profile: Profile) -> None:
    """The profile's latency budget and NAT timeout, compressed (the agent picks the keepalive)."""
    raw["batching"] = {"max_delay_s": profile.max_delay_s / profile.k}
    raw["uplink"]["nat_timeout_s"] = profile.nat_timeout_s / profile.k
    raw["uplink"]["heartbeat_s"] = profile.heartbeat_s


def start_receiver(bench: Bench, gateway_ids: list[str]) -> None:
    keys_dir = bench.workdir / "receiver-keys"
    keys_dir.mkdir()
    for gateway_id in gateway_ids:  # one key per gateway: a key belongs to one gateway only
        _private, public = signing_key.generate_keypair(bench.workdir / "keys" / gateway_id)
        shutil.copyfile(public, keys_dir / f"{gateway_id}.pem")
    log = (bench.workdir / "receiver.log").open("wb")
    bench.receiver = subprocess.Popen(
        [sys.executable, "-m", "gateway", "receiver", "--broker", f"127.0.0.1:{bench.broker.port}",
         "--keys", str(keys_dir), "--db", str(bench.receiver_db), "--stats-file", str(bench.workdir / "rstats.json"),
         "--log-level", "warning"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if json.loads((bench.workdir / "rstats.json").read_text()).get("connected"):
                return
        time.sleep(0.1)
    raise RuntimeError("receiver did not connect; see receiver.log")


def received(bench: Bench, gateway_id: str) -> tuple[list[float], int, list[float]]:
    """Arrival times of the batches (s), readings stored, and each reading's delay (s, compressed)."""
    with contextlib.closing(sqlite3.connect(bench.receiver_db, timeout=10)) as conn:
        arrivals = [
            ms / 1000
            for (ms,) in conn.execute(
                "SELECT received_ms FROM batches WHERE gateway_id = ? AND readings > 0 ORDER BY received_ms",
                (gateway_id,),
            )
        ]
        delays = [
            d / 1000
            for (d,) in conn.execute(
                "SELECT b.received_ms - r.ts_ms FROM readings r JOIN batches b"
                " ON b.gateway_id = r.gateway_id AND b.seq = r.seq WHERE r.gateway_id = ?",
                (gateway_id,),
            )
        ]
    return arrivals, len(delays), delays


def heartbeat_arrivals(bench: Bench, gateway_id: str) -> list[float]:
    """Arrival times (s) of the gateway's batches without readings: its heartbeats."""
    with contextlib.closing(sqlite3.connect(bench.receiver_db, timeout=10)) as conn:
        rows = conn.execute(
            "SELECT received_ms FROM batches WHERE gateway_id = ? AND readings = 0 ORDER BY received_ms",
            (gateway_id,),
        )
        return [ms / 1000 for (ms,) in rows]


# -- one profile ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """A profile's figures in real units."""

    kb_per_day: float
    bytes_per_reading: float | None
    max_delay_s: float | None
    lost: int
    connect_bytes: int
    steady: Counts
    window_real_s: float
    readings_per_day: float


async def wait_started(ports: list[PtyPort], timeout_s: float = 30.0) -> None:
    """Until the agent holds every sensor port open (it connects only when it has something to send)."""
    async with asyncio.timeout(timeout_s):
        for port in ports:
            await port.wait_for_reader(asyncio.Event())
    await asyncio.sleep(1.0 if ports else 3.0)


async def run_profile(bench: Bench, profile: Profile, replay: Replay, connect_bytes: int) -> Outcome:
    gateway_id = f"air-{profile.name}"
    trace = os.environ.get("AIR_BENCH_TRACE")
    relay = Relay(bench.broker.tls_port or 0, Path(f"{trace}.{profile.name}") if trace else None)
    await relay.start()
    recorder = Recorder(relay)
    n_sensors = SENSORS if profile.interval_s is not None else 0
    ports = [PtyPort(bench.workdir / f"tty-{gateway_id}-{i}") for i in range(n_sensors)]
    for port in ports:
        port.open()
    config = bench.agent_config(profile, gateway_id, [p.link for p in ports], relay.port)
    log = (bench.workdir / f"{gateway_id}.log").open("wb")
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "--config", str(config),
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    stop = asyncio.Event()
    written = replay.written_values
    try:
        async with asyncio.TaskGroup() as tasks:
            record = tasks.create_task(recorder.run())
            await wait_started(ports)
            start = time.time()
            sensors = [
                tasks.create_task(run_sensor(p, replay, i, profile.interval_s / profile.k, stop))
                for i, p in enumerate(ports)
                if profile.interval_s is not None
            ]
            window = await drive(bench, profile, gateway_id, relay, start)
            # the window closes SETTLE_S after its last batch arrived: the agent stops only after that,
            # or its shutdown (a last small batch, DISCONNECT and FIN: 670 bytes in profile b) counted as
            # steady traffic, multiplied into every day (b: +0.078 B/reading, 1.278 read as 1.356)
            await asyncio.sleep(max(0.0, window[1] - time.time()) + 2 * SAMPLE_S)
            stop.set()
            await asyncio.gather(*sensors)
            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await agent.wait()
            record.cancel()
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
        log.close()
        for port in ports:
            port.close()
        await relay.close()
    await asyncio.sleep(1.0)  # the receiver stores what the shutdown sent
    return measure(
        bench, profile, gateway_id, recorder, window, replay.written_values - written, connect_bytes
    )


async def drive(
    bench: Bench, profile: Profile, gateway_id: str, relay: Relay, start: float
) -> tuple[float, float]:
    """Run until the steady window is over (cutting the connection if the profile says so); its bounds."""
    k = profile.k
    cut_every = profile.cut_every_s / k if profile.cut_every_s else None
    next_cut = start + cut_every if cut_every else math.inf
    window_s = profile.heartbeat_s if profile.interval_s is None else profile.window_s / k
    deadline = start + 10 + 3 * (profile.max_delay_s + profile.nat_timeout_s) / k + window_s
    while time.time() < deadline:
        await asyncio.sleep(0.02)
        if time.time() >= next_cut:
            relay.cut()
            next_cut += cut_every or math.inf
        if profile.interval_s is None:
            # one heartbeat cycle: from the agent's start (its silence counts from there) until the
            # first heartbeat has arrived and the on-demand link has closed again (idle for the NAT timeout)
            beats = await asyncio.to_thread(heartbeat_arrivals, bench, gateway_id)
            if beats and time.time() >= beats[0] + 2 * profile.nat_timeout_s / k + 1:
                return start, time.time()
            continue
        arrivals = (await asyncio.to_thread(received, bench, gateway_id))[0]
        ends = [
            t for t in arrivals[2:] if len(arrivals) > 1 and t - arrivals[1] >= profile.window_s / k * 0.9
        ]
        if ends:
            return arrivals[1] + SETTLE_S, ends[0] + SETTLE_S
    raise RuntimeError(f"profile {profile.name}: too few batches arrived; see {gateway_id}.log")


def measure(
    bench: Bench,
    profile: Profile,
    gateway_id: str,
    recorder: Recorder,
    window: tuple[float, float],
    written: int,
    connect_bytes: int,
) -> Outcome:
    k = profile.k
    steady = recorder.at(window[1]).minus(recorder.at(window[0]))
    window_real_s = (window[1] - window[0]) * k
    if profile.interval_s is None:
        window_real_s = profile.window_s  # one heartbeat cycle, whatever its bounds' slack (drive())
    # a connection that lived through the window is set up about once a day: add one
    connect = connect_bytes if steady.connections == 0 and relay_used(recorder) else 0
    per_day = steady.on_air() * DAY_S / window_real_s + connect
    readings_per_day = (
        0.0 if profile.interval_s is None else SENSORS * len(QUANTITIES) * DAY_S / profile.interval_s
    )
    _, stored, delays = received(bench, gateway_id)
    return Outcome(
        kb_per_day=round(per_day / 1000, 1),
        bytes_per_reading=round(per_day / readings_per_day, 3) if readings_per_day else None,
        max_delay_s=round(max(delays) * k, 1) if delays else None,
        lost=written - stored,
        connect_bytes=connect,
        steady=steady,
        window_real_s=round(window_real_s),
        readings_per_day=readings_per_day,
    )


def relay_used(recorder: Recorder) -> bool:
    return recorder.samples[-1][1].connections > 0


async def connect_costs(relay_port: int, ca_file: Path) -> tuple[int, int, bool]:
    """Bytes on the air of one MQTT+TLS connect as the agent makes it (CONNECT, DISCONNECT, TCP open and close):
    a full handshake, then one resuming its TLS session as the agent does; and whether it resumed."""
    from gateway.uplink.session import ResumingContext

    tls = ResumingContext(str(ca_file), tls13_only=True)  # the agent's defaults: TLS 1.3, MQTT 5
    costs = []
    for _ in range(2):
        relay = Relay(relay_port)
        await relay.start()
        async with aiomqtt.Client(
            "127.0.0.1",
            relay.port,
            identifier="gateway-air-a",
            tls_context=tls,
            protocol=aiomqtt.ProtocolVersion.V5,
        ):
            await asyncio.sleep(0.1)  # the session tickets follow the handshake
            tls.remember()
        await asyncio.sleep(0.3)
        costs.append(relay.totals().on_air())
        await relay.close()
    return costs[0], costs[1], tls.resumed > 0


# -- baselines -------------------------------------------------------------------------------------


async def thingsboard_per_message(
    relay_port: int, ca_file: Path, replay: Replay, messages: int = 120
) -> float:
    """Bytes on the air per ThingsBoard gateway telemetry message (QoS 1, TLS, sent alone)."""
    relay = Relay(relay_port)
    await relay.start()
    tls = ssl.create_default_context(cafile=str(ca_file))
    t0 = 1_764_000_000_000
    async with aiomqtt.Client("127.0.0.1", relay.port, identifier="tb-gateway", tls_context=tls) as client:
        await asyncio.sleep(0.3)
        before = relay.totals()
        for n in range(messages):
            sensor = n % SENSORS
            line = replay.line(sensor).decode().strip()
            values = dict(part.split("=") for part in line.split(";"))
            telemetry = {QUANTITIES[g.lower()][1]: float(v) for g, v in values.items() if v}
            payload = {f"post-{sensor:02d}": [{"ts": t0 + (n // SENSORS) * 60_000, "values": telemetry}]}
            await client.publish("v1/gateway/telemetry", json.dumps(payload, separators=(",", ":")), qos=1)
            await asyncio.sleep(0.05)  # at 1/min per sensor, every message travels on its own
        await asyncio.sleep(0.3)
        spent = relay.totals().minus(before)
    await relay.close()
    return spent.on_air() / messages


def received_readings(db: Path, gateway_id: str) -> tuple[list[wire.SeriesInfo], wire.ReadingColumns]:
    """Every reading the receiver stored for `gateway_id`, in time order, as one batch's columns with
    its series declared as the agent declares them (the benchmark's resolutions, 100-ms time steps)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT sensor, quantity, unit, ts_ms, value, quality FROM readings WHERE gateway_id = ?"
            " ORDER BY ts_ms",
            (gateway_id,),
        ).fetchall()
    keys_seen = sorted({(s, q, u) for s, q, u, *_ in rows})
    index = {key: i for i, key in enumerate(keys_seen)}
    resolution = {q: r for _, q, _, r in QUANTITIES.values()}
    series = [wire.SeriesInfo(s, q, u, resolution.get(q), 100) for s, q, u in keys_seen]
    columns = wire.ReadingColumns(
        series=np.array([index[(s, q, u)] for s, q, u, *_ in rows], np.int32),
        ts_ms=np.array([r[3] for r in rows], np.int64),
        value=np.array([r[4] for r in rows], np.float64),
        quality=np.array([r[5] for r in rows], np.uint16),
    )
    return series, columns


def one_batch_bytes_per_reading(bench: Bench, gateway_id: str) -> float:
    """bench/wire_bench.py's measure on profile (b)'s readings: all of them in one large signed batch,
    quality flags included (60 % of the dew point file's values, 49-98, are beyond the quantity's
    physical limits and travel flagged OUT_OF_RANGE in the agent's batches too)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    series, columns = received_readings(bench.receiver_db, gateway_id)
    key = Ed25519PrivateKey.generate()
    body = wire.encode_batch(gateway_id=gateway_id, seq=1, created_ms=0, series=series, readings=columns)
    return len(wire.sign(body, key, wire.kid_for(key.public_key()))) / len(columns)


# -- main -----------------------------------------------------------------------------------------


async def main_async(workdir: Path) -> dict[str, Any]:
    certificate = loopback_certificate(workdir / "tls")
    broker = Mosquitto(workdir / "broker", tls=certificate)
    bench = Bench(workdir, broker, certificate.ca_file, workdir / "receiver.db")
    replay = Replay({g: load_column(stem) for g, (stem, _, _, _) in QUANTITIES.items()})
    result: dict[str, Any] = {}
    with broker:
        start_receiver(bench, [f"air-{p.name}" for p in PROFILES])
        try:
            full, resumed, did_resume = await connect_costs(broker.tls_port or 0, bench.ca_file)
            result.update(connect_bytes_full=full, connect_bytes_resumed=resumed, tls_resumed=did_resume)
            outcomes: dict[str, Outcome] = {}
            chosen = os.environ.get("AIR_BENCH_PROFILES", "abcd").replace(",", "")
            for profile in (p for p in PROFILES if p.name in chosen):
                outcome = await run_profile(bench, profile, replay, full)
                outcomes[profile.name] = outcome
                print(f"profile {profile.name}: {outcome}", flush=True)
            tb_message = await thingsboard_per_message(broker.tls_port or 0, bench.ca_file, replay)
            single = one_batch_bytes_per_reading(bench, "air-b") if "b" in outcomes else 0.0
        finally:
            if bench.receiver is not None:
                bench.receiver.terminate()
                bench.receiver.wait(10)
    tb_per_day = tb_message * SENSORS * DAY_S / 60
    result.update({f"{name}_kb_per_day": o.kb_per_day for name, o in outcomes.items()})
    result["max_delay_observed_s"] = {name: o.max_delay_s for name, o in outcomes.items()}
    result["lost"] = {name: o.lost for name, o in outcomes.items()}
    if "b" not in outcomes or "a" not in outcomes:
        return result
    b = outcomes["b"]
    result["b_bytes_per_reading"] = b.bytes_per_reading
    result["thingsboard_json_kb_per_day_a"] = round(tb_per_day / 1000, 1)
    result["b_overhead_ratio"] = round((b.bytes_per_reading or 0) / single, 3)
    result["b_one_batch_bytes_per_reading"] = round(single, 3)
    result["a_below_thingsboard_x"] = round(tb_per_day / 1000 / outcomes["a"].kb_per_day, 1)
    return result


def main() -> None:
    started = time.monotonic()
    keep = os.environ.get("AIR_BENCH_KEEP") is not None  # leave the logs and databases for a look
    tmp = Path(tempfile.mkdtemp(prefix="air-bench-"))
    try:
        result = asyncio.run(main_async(tmp))
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
