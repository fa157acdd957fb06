"""RTU over a pty pair at a simulated 9,600 baud: several slaves, dead/slow/refusing ones, unplug."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest

from drivers.base import DriverSpec
from drivers.modbus import build_drivers
from drivers.modbus.config import ModbusSection
from drivers.modbus.profile import load_profile
from hil.sims.modbus_slave import ModbusSimulator, SimulatedSlave, SlaveMode
from kernel.model import Quality

GUARD_S = 20.0  # only a guard against hanging: the tests wait for events, not for time


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel a driver; one that does not stop fails the test instead of hanging it."""
    task.cancel()
    async with asyncio.timeout(10):
        await asyncio.gather(task, return_exceptions=True)


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
    # a generous timeout (a 5-register read needs 25 ms at 9,600 baud) keeps a loaded machine from
    # failing healthy polls; the dead slave gets a short one (its timeouts are what it costs)
    settings = {"poll_interval_s": 0.2, "timeout_s": 1.0, "retries": 1, "dead_after": 2, "dead_retry_s": 60.0}
    settings.update(extra)
    return ModbusSection(port=port, unit=unit, profile=profile, **settings)


@pytest.mark.slow
async def test_dead_slow_and_refusing_slaves_do_not_hold_up_the_healthy_one(simulator, tmp_path, sink):
    slaves = [
        SimulatedSlave(1, load_profile("radar_level")),
        SimulatedSlave(2, load_profile("radar_level"), SlaveMode.DEAD),
        SimulatedSlave(3, load_profile("radar_level"), SlaveMode.SLOW, slow_s=0.1),
        SimulatedSlave(4, load_profile("analog_4_20ma"), SlaveMode.EXCEPTION),
    ]
    _sim, line = await simulator(slaves, tmp_path)
    profiles = {1: "radar_level", 2: "radar_level", 3: "radar_level", 4: "analog_4_20ma"}
    specs = [
        DriverSpec(
            f"s{unit}", section(line.client_port, unit, name, **({"timeout_s": 0.3} if unit == 2 else {}))
        )
        for unit, name in profiles.items()
    ]
    [bus] = build_drivers(specs)
    task = asyncio.create_task(bus.run(sink))
    try:
        stats = lambda: {s.unit: s for s in bus.statistics().slaves}  # noqa: E731
        await until(lambda: stats()[2].state == "dead")
        failed_when_dead = stats()[2].polls_failed
        timeouts_when_dead = bus.statistics().timeouts
        healthy_before = stats()[1].polls_ok
        await until(lambda: stats()[1].polls_ok >= healthy_before + 10)
        now = stats()
        # while its breaker is open the dead slave costs the bus no time: no request, no timeout
        assert now[2].polls_failed == failed_when_dead
        assert bus.statistics().timeouts == timeouts_when_dead
        assert now[1].polls_failed == 0 and now[3].polls_failed == 0
        assert now[3].polls_ok >= 5  # the slow one is polled along with the healthy one
        assert now[4].state == "alive" and now[4].exception_responses > 0
    finally:
        await stop(task)
    good = [r for r in sink.readings if r.quality == Quality.OK]
    assert {r.sensor for r in good} == {"s1", "s3"}
    refused = [r for r in sink.readings if r.sensor == "s4"]
    assert refused and all(math.isnan(r.value) and r.quality & Quality.DEVICE_WARNING for r in refused)
    assert not [r for r in sink.readings if r.sensor == "s2"]
    kinds = [e.kind for e in sink.events]
    assert kinds.count("slave_dead") == 1
    refusals = [e for e in sink.events if e.kind == "exception_response"]
    assert refusals and all("SERVER_DEVICE_BUSY" in e.detail for e in refusals)
    assert len(refusals) == len(bus.slaves[3].reads)  # once per read, not once per poll


TWO_HOLDING_REGISTERS = """
name = "two_registers"
manual = "test profile: two reads alike in function code and size"
[[fields]]
quantity = "voltage"
unit = "V"
kind = "holding"
address = 10
type = "uint16"
[[fields]]
quantity = "loop_current"
unit = "mA"
kind = "holding"
address = 300
type = "uint16"
"""


@pytest.mark.slow
async def test_late_answers_of_a_slave_slower_than_its_timeout_never_mix_up_values(simulator, tmp_path, sink):
    (tmp_path / "two_registers.toml").write_text(TWO_HOLDING_REGISTERS)
    slow = SimulatedSlave(3, load_profile("two_registers", tmp_path), SlaveMode.SLOW, slow_s=0.45)
    _sim, line = await simulator([SimulatedSlave(1, load_profile("radar_level")), slow], tmp_path)
    specs = [
        DriverSpec("radar", section(line.client_port, 1, "radar_level")),
        DriverSpec(
            "late",
            section(
                line.client_port, 3, "two_registers", profiles_dir=tmp_path, timeout_s=0.3, dead_after=1000
            ),
        ),
    ]
    [bus] = build_drivers(specs)
    task = asyncio.create_task(bus.run(sink))
    try:
        late = lambda q: [r for r in sink.readings if r.sensor == "late" and r.quantity == q]  # noqa: E731
        await until(lambda: len(late("voltage")) >= 2 and len(late("loop_current")) >= 2)
    finally:
        await stop(task)
    # the simulator serves about 230 V and 12 mA: a swapped answer would show up at once
    assert all(226 <= r.value <= 234 for r in late("voltage"))
    assert all(7 <= r.value <= 17 for r in late("loop_current"))
    radar = [r for r in sink.readings if r.sensor == "radar"]
    assert radar and all(r.value == 5.0 for r in radar if r.quantity == "installation_height")
    assert bus.statistics().slaves[0].polls_failed == 0


@pytest.mark.slow
async def test_slave_switched_from_dead_to_normal_is_probed_back_to_life(simulator, tmp_path, sink):
    sim, line = await simulator([SimulatedSlave(5, load_profile("radar_level"), SlaveMode.DEAD)], tmp_path)
    spec = DriverSpec("radar", section(line.client_port, 5, "radar_level", timeout_s=0.2, dead_retry_s=0.5))
    [bus] = build_drivers([spec])
    task = asyncio.create_task(bus.run(sink))
    try:
        await until(lambda: bus.statistics().slaves[0].state == "dead")
        assert not sink.readings
        sim.slave(5).mode = SlaveMode.NORMAL
        await until(lambda: len(sink.readings) >= 3)
    finally:
        await stop(task)
    assert [e.kind for e in sink.events if e.kind.startswith("slave_")] == ["slave_dead", "slave_alive"]
    assert bus.statistics().slaves[0].state == "alive"


@pytest.mark.slow
async def test_unplugged_adapter_is_reopened_and_readings_resume(simulator, tmp_path, sink):
    _sim, line = await simulator([SimulatedSlave(7, load_profile("radar_level"))], tmp_path)
    [bus] = build_drivers([DriverSpec("radar", section(line.client_port, 7, "radar_level"))])
    task = asyncio.create_task(bus.run(sink))
    try:
        await until(lambda: len(sink.readings) >= 3)
        line.unplug()
        await until(lambda: any(e.kind == "bus_lost" for e in sink.events))
        seen = len(sink.readings)
        line.replug()
        await until(lambda: len(sink.readings) >= seen + 3)
    finally:
        await stop(task)
    assert "bus_open" in [e.kind for e in sink.events]
    assert bus.statistics().losses == 1
    assert bus.statistics().opens >= 2


async def test_strict_device_refusing_holes_is_read_field_by_field(simulator, tmp_path, sink):
    slave = SimulatedSlave(1, load_profile("radar_level"), refuse_holes=True)
    _sim, line = await simulator([slave], tmp_path)
    [bus] = build_drivers([DriverSpec("radar", section(line.client_port, 1, "radar_level"))])
    task = asyncio.create_task(bus.run(sink))
    try:
        await until(lambda: {r.quantity for r in sink.readings} >= {"distance", "water_level"})
    finally:
        await stop(task)
    assert bus.statistics().slaves[0].reads_per_poll == 3
    assert {r.unit for r in sink.readings} == {"m"}
