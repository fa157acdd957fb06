"""The serial driver over a fake line we own: stamping, reopen with backoff, stale/recovered events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from drivers.base import DriverSpec, Sink
from drivers.serial import build_drivers
from drivers.serial.config import SerialSection
from drivers.serial.driver import Line, SerialDriver
from drivers.serial.nmea import NmeaCodec, sentence
from kernel.errors import DeviceError
from kernel.wallclock import now_ms

MTW = sentence("YXMTW,11.2,C")


class FakeLine:
    """A port that delivers scripted chunks; a DeviceError in the script is raised by read()."""

    def __init__(self, script: list[bytes | DeviceError]) -> None:
        self.port = "fake"
        self.script = script
        self.more = asyncio.Event()
        self.closed = False

    async def read(self) -> bytes:
        while not self.script:
            self.more.clear()
            await self.more.wait()
        item = self.script.pop(0)
        if isinstance(item, DeviceError):
            raise item
        return item

    async def write(self, data: bytes) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


class Ports:
    """Opens the next line of a list; an exception in the list means 'cannot open'."""

    def __init__(self, lines: list[FakeLine | DeviceError]) -> None:
        self.lines = lines
        self.opened: list[FakeLine] = []

    async def __call__(self, section: SerialSection) -> Line:
        if not self.lines:
            await asyncio.Event().wait()
        item = self.lines.pop(0)
        if isinstance(item, DeviceError):
            raise item
        self.opened.append(item)
        return item


def spec(stale_after_s: float = 60.0) -> DriverSpec[SerialSection]:
    section = SerialSection(port="/dev/fake", reopen_initial_s=0.01, reopen_cap_s=0.02)
    return DriverSpec("water-1", section, stale_after_s=stale_after_s)


async def run_until(driver: SerialDriver, sink: Sink, done: Callable[[], bool]) -> None:
    task = asyncio.create_task(driver.run(sink))
    try:
        async with asyncio.timeout(10):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_readings_carry_sensor_id_and_the_reception_wall_clock(sink) -> None:
    before = now_ms()
    driver = SerialDriver(spec(), NmeaCodec(), opener=Ports([FakeLine([MTW[:7], MTW[7:]])]))
    await run_until(driver, sink, lambda: bool(sink.readings))
    (reading,) = sink.readings
    assert (reading.sensor, reading.quantity, reading.value, reading.unit) == (
        "water-1", "water_temperature", 11.2, "Cel"
    )  # fmt: skip
    assert before <= reading.ts_ms <= now_ms()


async def test_a_vanished_port_is_reopened_with_one_warning_and_one_info(sink) -> None:
    ports = Ports(
        [
            FakeLine([MTW, DeviceError("gone")]),
            DeviceError("no such file"),
            DeviceError("no such file"),
            FakeLine([MTW]),
        ]
    )
    driver = SerialDriver(spec(), NmeaCodec(), opener=ports)
    with capture_logs() as logs:
        await run_until(driver, sink, lambda: len(sink.readings) == 2)
    levels = [(entry["log_level"], entry["event"]) for entry in logs if "port" in entry["event"]]
    assert [level for level, _ in levels].count("warning") == 1
    assert [level for level, _ in levels].count("debug") >= 2
    assert levels[-1][0] == "info"
    assert [e.kind for e in sink.events] == ["port_lost"]
    assert all(line.closed for line in ports.opened[:1])
    stats = driver.statistics()
    assert stats.port_failures == 3
    assert stats.readings == 2


async def test_a_silent_sensor_goes_stale_once_and_recovers_when_data_returns(sink) -> None:
    line = FakeLine([MTW])
    driver = SerialDriver(spec(stale_after_s=0.2), NmeaCodec(), opener=Ports([line]))

    def stale_then_data() -> bool:
        if [e.kind for e in sink.events] == ["stale"] and len(sink.readings) == 1:
            line.script.append(MTW)
            line.more.set()
        return len(sink.readings) == 2

    await run_until(driver, sink, stale_then_data)
    assert [e.kind for e in sink.events] == ["stale", "recovered"]
    assert all(e.source == "water-1" for e in sink.events)


async def test_garbage_does_not_count_as_data_for_staleness(sink) -> None:
    line = FakeLine([b"noise\r\n"] * 3)
    driver = SerialDriver(spec(stale_after_s=0.1), NmeaCodec(), opener=Ports([line]))
    await run_until(driver, sink, lambda: bool(sink.events))
    assert [e.kind for e in sink.events] == ["stale"]
    assert sink.readings == []
    assert driver.statistics().codec.garbage_bytes == 21


def test_build_drivers_gives_one_named_driver_per_sensor() -> None:
    built = build_drivers([spec(), DriverSpec("wx-2", SerialSection(port="/dev/ttyUSB1"))])
    assert [d.name for d in built] == ["water-1", "wx-2"]
