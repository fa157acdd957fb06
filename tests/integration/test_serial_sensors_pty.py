"""Every serial sensor type over a real pty: simulator process -> SerialDriver, unplug mid-frame, 20 at once.

The simulators count exactly what they wrote; every valid reading must arrive once, across hangups.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.base import Driver, DriverSpec
from drivers.serial import SerialDriver, build_drivers
from drivers.serial.config import SerialSection
from hil.recording import RecordingSink
from hil.sims.line_sensor import PATTERN
from kernel.model import HealthEvent

LINE_REGEX = {
    "pattern": PATTERN,
    "fields": {
        "t": {"quantity": "air_temperature", "unit": "Cel"},
        "h": {"quantity": "relative_humidity", "unit": "%RH"},
        "p": {"quantity": "barometric_pressure", "unit": "Pa", "scale": 100.0},
    },
}
FAULTS = ["--garbage-every", "2", "--bad-every", "3"]
FAST_REOPEN = {"reopen_initial_s": 0.1, "reopen_cap_s": 0.5}

#: name -> (simulator module, its arguments, the sensor's serial section without the port)
SENSORS: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "nmea": (
        "hil.sims.nmea_station",
        ["--rate", "20", "--sentences", "mda,mwv,mtw,xdr"],
        {"protocol": "nmea"},
    ),
    "sds011-active": ("hil.sims.sds011", ["--rate", "20"], {"protocol": "sds011"}),
    "sds011-query": (
        "hil.sims.sds011",
        ["--rate", "20", "--query-mode"],
        {"protocol": "sds011", "polling": {"mode": "query", "interval_s": 0.1}},
    ),
    "sds011-duty": (
        "hil.sims.sds011",
        ["--rate", "20"],
        {"protocol": "sds011", "polling": {"interval_s": 0.7, "warmup_s": 0.02, "read_s": 0.05}},
    ),
    "pms5003-active": ("hil.sims.pms5003", ["--rate", "20"], {"protocol": "pms5003"}),
    "pms5003-duty": (
        "hil.sims.pms5003",
        ["--rate", "20"],
        {"protocol": "pms5003", "polling": {"interval_s": 0.7, "warmup_s": 0.02, "read_s": 0.05}},
    ),
    "wxt": ("hil.sims.wxt", ["--rate", "20", "--invalid-every", "3"], {"protocol": "wxt"}),
    "wxt-polled-crc": (
        "hil.sims.wxt",
        ["--rate", "20", "--polled"],
        {"protocol": "wxt", "wxt_crc": True, "polling": {"mode": "query", "interval_s": 0.1}},
    ),
    "regex": ("hil.sims.line_sensor", ["--rate", "20"], {"protocol": "regex", "regex": LINE_REGEX}),
}


@dataclass
class Sim:
    sensor: str
    process: subprocess.Popen[str]
    link: Path
    section: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> dict[str, int]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=20)
        result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return result


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    with ExitStack() as stack:
        started: list[Sim] = []

        def start(sensor: str, kind: str, *extra: str) -> Sim:
            module, args, section = SENSORS[kind]
            link = tmp_path / f"tty-{sensor}"
            log = stack.enter_context((tmp_path / f"{sensor}.log").open("w"))
            command = [sys.executable, "-m", module, "--link", str(link), *args, *FAULTS, *extra]
            process = subprocess.Popen(
                [*command, "--seed", str(len(started))], stdout=subprocess.PIPE, stderr=log, text=True
            )
            sim = Sim(sensor, process, link, {**section, **FAST_REOPEN, "port": str(link)})
            started.append(sim)
            return sim

        yield start
        for sim in started:
            if sim.process.poll() is None:
                sim.process.kill()
            sim.process.communicate()


def wait_ready(sim: Sim) -> None:
    assert sim.process.stdout is not None
    assert json.loads(sim.process.stdout.readline()) == {"ready": str(sim.link)}


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def stop_and_compare(sims: list[Sim], sink: RecordingSink) -> None:
    """SIGTERM the simulators (they drain first) and check every reading they sent arrived once."""
    sent = await asyncio.gather(*(asyncio.to_thread(sim.stop) for sim in sims))
    for sim, counters in zip(sims, sent, strict=True):
        await until(
            lambda s=sim, c=counters: sink.count(s.sensor) >= c["readings"], f"{sim.sensor} drained", 5
        )
    await asyncio.sleep(0.2)  # anything more would be a duplicate
    for sim, counters in zip(sims, sent, strict=True):
        assert sink.count(sim.sensor) == counters["readings"], sim.sensor
        assert counters["bad"] > 0, sim.sensor


def drivers_for(sims: list[Sim]) -> list[Driver]:
    specs = [DriverSpec(s.sensor, SerialSection.model_validate(s.section), stale_after_s=30) for s in sims]
    return build_drivers(specs)


async def run_drivers(drivers: list[Driver], sink: RecordingSink) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(d.run(sink)) for d in drivers]


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)


@pytest.mark.slow
@pytest.mark.parametrize("kind", [k for k in SENSORS if k != "nmea"])
async def test_each_sensor_type_survives_an_unplug_mid_frame_without_loss(
    kind: str, sims: Callable[..., Sim], sink: RecordingSink
) -> None:
    sim = sims(kind, kind)
    wait_ready(sim)
    (driver,) = drivers_for([sim])
    assert isinstance(driver, SerialDriver)
    tasks = await run_drivers([driver], sink)
    try:
        frames = 3 if kind.endswith("duty") else 6
        await until(lambda: driver.statistics().samples >= frames, "first frames")
        sim.process.send_signal(signal.SIGUSR1)
        await until(lambda: any(e.kind == "port_lost" for e in sink.events), "the unplug")
        before = driver.statistics().samples
        await until(lambda: driver.statistics().samples >= before + frames, "frames after replug")
        await stop_and_compare([sim], sink)
    finally:
        await cancel(tasks)
    stats = driver.statistics()
    assert stats.codec.garbage_bytes + stats.codec.ignored > 0  # the regex parser ignores whole lines
    # faults are injected into answers to polls as well as into streamed frames
    assert stats.codec.checksum_errors + stats.codec.malformed + stats.codec.ignored > 0


@pytest.mark.slow
async def test_twenty_sensors_at_once_and_an_unplug_only_touches_its_own_sensor(
    sims: Callable[..., Sim], sink: RecordingSink
) -> None:
    kinds = ["nmea", "sds011-active", "pms5003-active", "wxt", "regex"]
    started = [sims(f"{kind}-{i}", kind) for i in range(4) for kind in kinds]
    for sim in started:
        wait_ready(sim)
    drivers = drivers_for(started)
    tasks = await run_drivers(drivers, sink)
    try:
        await until(lambda: all(sink.count(s.sensor) >= 5 for s in started), "readings from all 20")
        unplugged = started[:3]
        for sim in unplugged:
            sim.process.send_signal(signal.SIGUSR1)
        await until(lambda: len({e.source for e in sink.events}) >= 3, "the unplugs")
        counts = {s.sensor: sink.count(s.sensor) for s in started}
        await until(lambda: all(sink.count(s) >= n + 5 for s, n in counts.items()), "readings after replug")
        noticed = {e.source for e in sink.events}
        await stop_and_compare(started, sink)
    finally:
        await cancel(tasks)
    assert noticed == {s.sensor for s in unplugged}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nmea", "sds011-query"])
async def test_a_silent_sensor_goes_stale_and_recovers_without_invented_readings(
    kind: str, sims: Callable[..., Sim], sink: RecordingSink
) -> None:
    sim = sims("quiet", kind, "--silence-every", "10", "--silence-s", "1.5")
    wait_ready(sim)
    spec = DriverSpec("quiet", SerialSection.model_validate(sim.section), stale_after_s=0.6)
    (driver,) = build_drivers([spec])

    def after_first_reading() -> list[HealthEvent]:
        # a slow start may look stale too: only a silence after data counts
        first = sink.of("quiet")
        return [e for e in sink.events if first and e.ts_ms > first[0].ts_ms]

    tasks = await run_drivers([driver], sink)
    try:
        await until(
            lambda: [e.kind for e in after_first_reading()][:2] == ["stale", "recovered"], "stale, recovered"
        )
        stale, recovered = after_first_reading()[:2]
        assert not [r for r in sink.of("quiet") if stale.ts_ms <= r.ts_ms < recovered.ts_ms]
        await stop_and_compare([sim], sink)
    finally:
        await cancel(tasks)
