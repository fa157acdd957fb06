"""Modbus TCP: profiles behind one server, one driver; dead, slow and refusing units among them."""

from __future__ import annotations

import asyncio
import math

import pytest

from drivers.base import DriverSpec
from drivers.modbus import build_drivers
from drivers.modbus.config import ModbusSection
from drivers.modbus.profile import load_profile
from hil.sims.modbus_slave import ModbusSimulator, SimulatedSlave, SlaveMode
from kernel.model import Quality


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel a driver; one that does not stop fails the test instead of hanging it."""
    task.cancel()
    async with asyncio.timeout(10):
        await asyncio.gather(task, return_exceptions=True)


async def test_three_profiles_over_tcp_give_readings_with_their_units(sink):
    names = {1: "sdm630", 2: "analog_4_20ma", 3: "radar_level"}
    sim = ModbusSimulator([SimulatedSlave(u, load_profile(n)) for u, n in names.items()])
    port = await sim.start_tcp()
    specs = [
        DriverSpec(
            f"{name}-{unit}",
            ModbusSection(host="127.0.0.1", tcp_port=port, unit=unit, profile=name, poll_interval_s=0.2),
        )
        for unit, name in names.items()
    ]
    drivers = build_drivers(specs)
    assert len(drivers) == 1
    task = asyncio.create_task(drivers[0].run(sink))
    try:
        async with asyncio.timeout(20):
            while {r.sensor for r in sink.readings} != {s.sensor_id for s in specs}:
                await asyncio.sleep(0.02)
    finally:
        await stop(task)
        await sim.stop()
    latest = {(r.sensor, r.quantity): r for r in sink.readings}
    voltage = latest[("sdm630-1", "voltage_l1")]
    assert voltage.unit == "V" and 220 < voltage.value < 240
    energy = latest[("sdm630-1", "energy_import")]
    # the simulated meter counts about 1,000 kWh: unscaled the reading would be about 1000
    assert energy.unit == "Wh" and energy.value > 900_000
    loop_current = latest[("analog_4_20ma-2", "current_ch1")]
    assert loop_current.unit == "mA" and 4 <= loop_current.value <= 20
    assert latest[("radar_level-3", "installation_height")].value == 5.0
    assert drivers[0].statistics().slaves[0].reads_per_poll * 10 <= 76


MIXED = """
name = "mixed"
manual = "test profile: every table, several types and orders"
max_gap = 4

[[fields]]
quantity = "door_open"
unit = "1"
kind = "coil"
address = 3
type = "bool"

[[fields]]
quantity = "alarm"
unit = "1"
kind = "discrete"
address = 17
type = "bool"

[[fields]]
quantity = "energy_counter"
unit = "Wh"
kind = "holding"
address = 10
type = "uint32"
order = "CDAB"

[[fields]]
quantity = "temperature"
unit = "Cel"
kind = "holding"
address = 14
type = "int16"
scale = 0.1

[[fields]]
quantity = "status_code"
unit = "1"
kind = "holding"
address = 16
type = "bits"
bit = 3
width = 2

[[fields]]
quantity = "energy_total"
unit = "Wh"
kind = "holding"
address = 18
type = "int64"
order = "BADC"

[[fields]]
quantity = "flow"
unit = "m3/s"
kind = "input"
address = 0
type = "float64"
order = "DCBA"
"""


async def test_every_table_and_mixed_orders_round_trip_through_a_real_server(tmp_path, sink):
    (tmp_path / "mixed.toml").write_text(MIXED)
    profile = load_profile("mixed", tmp_path)
    sim = ModbusSimulator([SimulatedSlave(5, profile)])
    port = await sim.start_tcp()
    section = ModbusSection(host="127.0.0.1", tcp_port=port, unit=5, profile="mixed", profiles_dir=tmp_path)
    [driver] = build_drivers([DriverSpec("plc", section)])
    task = asyncio.create_task(driver.run(sink))
    try:
        async with asyncio.timeout(20):
            while len({r.quantity for r in sink.readings}) < 7:
                await asyncio.sleep(0.02)
    finally:
        await stop(task)
        await sim.stop()
    latest = {r.quantity: r for r in sink.readings}
    # the simulator's values for units it does not know: 10 +- 1; counters near 1e6
    # only the configured bits are set in the simulator: reading them proves the bit addressing
    assert latest["door_open"].value == 1.0 and latest["alarm"].value == 1.0
    assert 1_000_000 <= latest["energy_counter"].value < 1_100_000
    assert 8.9 <= latest["temperature"].value <= 11.1
    assert 8.9 <= latest["flow"].value <= 11.1
    assert latest["status_code"].value == 3.0  # two bits from bit 3 of register 16
    assert 1_000_000 <= latest["energy_total"].value < 1_100_000
    assert driver.statistics().slaves[0].reads_per_poll == 4  # coil, discrete, holding, input


@pytest.mark.slow
async def test_dead_slow_and_refusing_units_behind_one_tcp_server_leave_the_healthy_one_alone(sink):
    radar = load_profile("radar_level")
    sim = ModbusSimulator(
        [
            SimulatedSlave(1, radar),
            SimulatedSlave(2, radar, SlaveMode.DEAD),
            SimulatedSlave(3, radar, SlaveMode.SLOW, slow_s=0.1),
            SimulatedSlave(4, load_profile("analog_4_20ma"), SlaveMode.EXCEPTION),
        ]
    )
    port = await sim.start_tcp()
    profiles = {1: "radar_level", 2: "radar_level", 3: "radar_level", 4: "analog_4_20ma"}
    specs = [
        DriverSpec(
            f"u{unit}",
            ModbusSection(
                host="127.0.0.1",
                tcp_port=port,
                unit=unit,
                profile=name,
                poll_interval_s=0.2,
                timeout_s=0.3 if unit == 2 else 1.0,
                dead_after=2,
                dead_retry_s=60.0,
            ),
        )
        for unit, name in profiles.items()
    ]
    [driver] = build_drivers(specs)
    task = asyncio.create_task(driver.run(sink))
    stats = lambda: {s.unit: s for s in driver.statistics().slaves}  # noqa: E731
    try:
        async with asyncio.timeout(20):
            while stats()[2].state != "dead":
                await asyncio.sleep(0.02)
            timeouts_when_dead = driver.statistics().timeouts
            healthy_before = stats()[1].polls_ok
            while stats()[1].polls_ok < healthy_before + 10:
                await asyncio.sleep(0.02)
    finally:
        await stop(task)
        await sim.stop()
    now = stats()
    assert driver.statistics().timeouts == timeouts_when_dead  # the dead unit costs nothing now
    assert now[1].polls_failed == 0 and now[3].polls_failed == 0 and now[3].polls_ok >= 5
    assert {r.sensor for r in sink.readings if r.quality == Quality.OK} == {"u1", "u3"}
    refused = [r for r in sink.readings if r.sensor == "u4"]
    assert refused and all(math.isnan(r.value) and r.quality & Quality.DEVICE_WARNING for r in refused)
    assert [e.kind for e in sink.events].count("slave_dead") == 1


async def test_server_restart_is_a_lost_connection_that_is_reopened(sink):
    radar = load_profile("radar_level")
    sim = ModbusSimulator([SimulatedSlave(1, radar)])
    port = await sim.start_tcp()
    section = ModbusSection(
        host="127.0.0.1", tcp_port=port, unit=1, profile="radar_level", poll_interval_s=0.1
    )
    [driver] = build_drivers([DriverSpec("radar", section)])
    task = asyncio.create_task(driver.run(sink))
    try:
        async with asyncio.timeout(20):
            while len(sink.readings) < 3:
                await asyncio.sleep(0.02)
            await sim.stop()
            while "bus_lost" not in [e.kind for e in sink.events]:
                await asyncio.sleep(0.02)
            sim = ModbusSimulator([SimulatedSlave(1, radar)])
            await sim.start_tcp(port=port)
            seen = len(sink.readings)
            while len(sink.readings) < seen + 3:
                await asyncio.sleep(0.02)
    finally:
        await stop(task)
        await sim.stop()
    assert "bus_open" in [e.kind for e in sink.events]
    assert driver.statistics().losses == 1
