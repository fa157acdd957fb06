"""RTU over a pty pair at a simulated 9,600 baud: several slaves, dead/slow/refusing ones, unplug."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from drivers.base import DriverSpec
from drivers.modbus import build_drivers
from drivers.modbus.config import ModbusSection
from drivers.modbus.profile import load_profile
from hil.sims.modbus_slave import ModbusSimulator, SimulatedSlave, SlaveMode

GUARD_S = 20.0  # only a guard against hanging: the tests wait for events, not for time


class ListSink:
    def __init__(self) -> None:
        self.readings = []
        self.events = []

    def reading(self, reading) -> None:
        self.readings.append(reading)

    def event(self, event) -> None:
        self.events.append(event)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD_S):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def simulator():
    sims = []

    async def start(slaves, tmp_path):
        sim = ModbusSimulator(slaves)
        line = await sim.start_rtu(tmp_path / "ttyUSB-modbus", baud=9600)
        sims.append(sim)
        return sim, line

    yield start
    for sim in sims:
        await sim.stop()


def section(port: str, unit: int, profile: str, **extra) -> ModbusSection:
    return ModbusSection(
        port=port,
        unit=unit,
        profile=profile,
        poll_interval_s=0.2,
        timeout_s=0.3,
        retries=1,
        dead_after=2,
        dead_retry_s=60.0,
        **extra,
    )


async def test_dead_slow_and_refusing_slaves_do_not_hold_up_the_healthy_one(simulator, tmp_path):
    slaves = [
        SimulatedSlave(1, load_profile("radar_level")),
        SimulatedSlave(2, load_profile("radar_level"), SlaveMode.DEAD),
        SimulatedSlave(3, load_profile("radar_level"), SlaveMode.SLOW, slow_s=0.1),
        SimulatedSlave(4, load_profile("analog_4_20ma"), SlaveMode.EXCEPTION),
    ]
    _sim, line = await simulator(slaves, tmp_path)
    profiles = {1: "radar_level", 2: "radar_level", 3: "radar_level", 4: "analog_4_20ma"}
    specs = [DriverSpec(f"s{unit}", section(line.client_port, unit, name)) for unit, name in profiles.items()]
    [bus] = build_drivers(specs)
    sink = ListSink()
    task = asyncio.create_task(bus.run(sink))
    try:
        stats = lambda: {s.unit: s for s in bus.statistics().slaves}  # noqa: E731
        await until(lambda: stats()[2].state == "dead")
        failed_when_dead = stats()[2].polls_failed
        healthy_before = stats()[1].polls_ok
        await until(lambda: stats()[1].polls_ok >= healthy_before + 10)
        now = stats()
        assert now[2].polls_failed == failed_when_dead  # a dead slave is left alone
        assert now[1].polls_failed == 0 and now[3].polls_failed == 0
        assert now[4].state == "alive" and now[4].exception_responses > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    sensors = {r.sensor for r in sink.readings}
    assert sensors == {"s1", "s3"}
    kinds = [e.kind for e in sink.events]
    assert kinds.count("slave_dead") == 1
    refusals = [e for e in sink.events if e.kind == "exception_response"]
    assert refusals and all("SERVER_DEVICE_BUSY" in e.detail for e in refusals)
    assert len(refusals) == len(bus.slaves[3].reads)  # once per read, not once per poll


async def test_unplugged_adapter_is_reopened_and_readings_resume(simulator, tmp_path):
    _sim, line = await simulator([SimulatedSlave(7, load_profile("radar_level"))], tmp_path)
    [bus] = build_drivers([DriverSpec("radar", section(line.client_port, 7, "radar_level"))])
    sink = ListSink()
    task = asyncio.create_task(bus.run(sink))
    try:
        await until(lambda: len(sink.readings) >= 3)
        line.unplug()
        await until(lambda: any(e.kind == "bus_lost" for e in sink.events))
        seen = len(sink.readings)
        line.replug()
        await until(lambda: len(sink.readings) >= seen + 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "bus_open" in [e.kind for e in sink.events]
    assert bus.statistics().losses == 1
    assert bus.statistics().opens >= 2


async def test_strict_device_refusing_holes_is_read_field_by_field(simulator, tmp_path):
    slave = SimulatedSlave(1, load_profile("radar_level"), refuse_holes=True)
    _sim, line = await simulator([slave], tmp_path)
    [bus] = build_drivers([DriverSpec("radar", section(line.client_port, 1, "radar_level"))])
    sink = ListSink()
    task = asyncio.create_task(bus.run(sink))
    try:
        await until(lambda: {r.quantity for r in sink.readings} >= {"distance", "water_level"})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert bus.statistics().slaves[0].reads_per_poll == 3
    assert {r.unit for r in sink.readings} == {"m"}
