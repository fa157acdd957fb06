"""Bus scheduler on a virtual clock with a fake link we own: rates, breaker, exceptions, reopen."""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections import Counter

from drivers.modbus.breaker import SlaveBreaker
from drivers.modbus.bus import BusTiming, ModbusBus
from drivers.modbus.errors import BusLost, ExceptionResponse, SlaveTimeout
from drivers.modbus.planner import PlanLimits
from drivers.modbus.profile import load_profile, parse_profile
from drivers.modbus.slave import Slave
from gateway.backoff import Backoff
from gateway.model import Quality

CHAR_S = 10 / 9600


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class FakeLink:
    """Answers like a 9,600 baud RTU line: registers hold their own address."""

    endpoint = "fake-line"

    def __init__(self, time: VirtualTime) -> None:
        self.time = time
        self.dead: set[int] = set()
        self.refusing: dict[int, int] = {}
        self.holes: set[int] = set()
        self.words: dict[int, list[int]] = {}
        self.requests: Counter[int] = Counter()
        self.opened = 0
        self.lose_at_request: int | None = None
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self, timeout_s: float = 5.0) -> None:
        self.opened += 1
        self._open = True

    def close(self) -> None:
        self._open = False

    async def read(self, kind, unit, address, count, timeout_s):
        await asyncio.sleep(0)
        self.requests[unit] += 1
        if self.lose_at_request == sum(self.requests.values()):
            self._open = False
            raise BusLost("unplugged")
        if unit in self.dead:
            self.time.now += timeout_s
            raise SlaveTimeout(unit)
        self.time.now += (8 + 5 + 2 * count) * CHAR_S
        if unit in self.refusing:
            raise ExceptionResponse(unit, self.refusing[unit])
        if any(address <= hole < address + count for hole in self.holes):
            raise ExceptionResponse(unit, 2)
        if unit in self.words:
            return self.words[unit][:count]
        return [a & 0xFFFF for a in range(address, address + count)]


class ListSink:
    def __init__(self) -> None:
        self.readings = []
        self.events = []

    def reading(self, reading) -> None:
        self.readings.append(reading)

    def event(self, event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def radar_slave(unit: int, interval_s: float = 1.0, max_gap: int = 1) -> Slave:
    profile = load_profile("radar_level")
    slave = Slave.planned(
        f"radar{unit}",
        unit,
        profile,
        profile.fields,
        profile.limits(max_gap=max_gap),
        interval_s=interval_s,
        timeout_s=1.0,
        retries=2,
    )
    slave.breaker = SlaveBreaker(dead_after=3, probe=Backoff(10.0, 300.0, jitter=0))
    return slave


async def run_for(bus: ModbusBus, time: VirtualTime, seconds: float, sink: ListSink) -> None:
    task = asyncio.create_task(bus.run(sink))
    end = time.now + seconds
    while time.now < end and not task.done():
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def make_bus(time: VirtualTime, link: FakeLink, slaves: list[Slave]) -> ModbusBus:
    return ModbusBus(
        "modbus:test",
        link,  # type: ignore[arg-type]
        slaves,
        BusTiming(connect_gap_s=0.1, request_gap_s=3.5 * CHAR_S),
        reopen=Backoff(0.5, 5.0, jitter=0),
        clock=time.clock,
        wall_clock=time.wall,
        sleep=time.sleep,
    )


async def test_one_dead_slave_of_five_leaves_the_others_their_poll_rate():
    time, sink = VirtualTime(), ListSink()
    link = FakeLink(time)
    link.dead.add(5)
    slaves = [radar_slave(unit) for unit in range(1, 6)]
    bus = make_bus(time, link, slaves)
    await run_for(bus, time, 600.0, sink)
    stats = {s.unit: s for s in bus.statistics().slaves}
    for unit in range(1, 5):
        assert stats[unit].polls_ok >= 0.9 * 600, stats[unit]
        assert stats[unit].polls_failed == 0
    assert stats[5].state == "dead"
    # three polls of three attempts until the breaker opens, then single probes 10, 20, 40... s apart
    assert link.requests[5] <= 3 * 3 + 6
    assert sink.kinds().count("slave_dead") == 1


async def test_dead_slave_is_noticed_again_when_it_answers():
    time, sink = VirtualTime(), ListSink()
    link = FakeLink(time)
    link.dead.add(2)
    bus = make_bus(time, link, [radar_slave(1), radar_slave(2)])
    await run_for(bus, time, 30.0, sink)
    link.dead.clear()
    await run_for(bus, time, 400.0, sink)
    assert sink.kinds().count("slave_dead") == 1
    assert sink.kinds().count("slave_alive") == 1
    assert any(r.sensor == "radar2" for r in sink.readings)
    assert {s.state for s in bus.statistics().slaves} == {"alive"}


async def test_exception_response_skips_readings_and_is_reported_once_per_change():
    time, sink = VirtualTime(), ListSink()
    link = FakeLink(time)
    link.refusing[2] = 6
    bus = make_bus(time, link, [radar_slave(1), radar_slave(2)])
    await run_for(bus, time, 20.0, sink)
    assert not [r for r in sink.readings if r.sensor == "radar2"]
    assert sink.kinds().count("exception_response") == 1
    assert "SERVER_DEVICE_BUSY" in next(e.detail for e in sink.events if e.kind == "exception_response")
    stats = {s.unit: s for s in bus.statistics().slaves}
    assert stats[2].state == "alive" and stats[2].exception_responses >= 15
    del link.refusing[2]
    await run_for(bus, time, 5.0, sink)
    assert sink.kinds().count("exception_cleared") == 1
    assert [r for r in sink.readings if r.sensor == "radar2"]


async def test_readings_carry_profile_quantity_unit_and_scaled_value():
    time, sink = VirtualTime(), ListSink()
    link = FakeLink(time)
    bus = make_bus(time, link, [radar_slave(1)])
    await run_for(bus, time, 1.5, sink)
    first = {r.quantity: r for r in sink.readings[:3]}
    assert first["distance"].value == 0.001  # register 1 holds 1 (mm) -> 0.001 m
    assert first["distance"].unit == "m"
    assert first["installation_height"].value == 0.05  # register 5 holds 5 (cm)
    assert first["water_level"].sensor == "radar1"
    assert first["distance"].ts_ms >= 1_700_000_000_000


async def test_merged_read_refused_for_a_hole_falls_back_to_one_read_per_field():
    time, sink = VirtualTime(), ListSink()
    link = FakeLink(time)
    link.holes = {2, 4}
    slave = radar_slave(1)
    assert len(slave.reads) == 1
    bus = make_bus(time, link, [slave])
    await run_for(bus, time, 3.0, sink)
    assert len(slave.reads) == 3
    assert {r.quantity for r in sink.readings} == {"distance", "water_level", "installation_height"}


async def test_lost_port_is_reopened_and_polling_goes_on():
    time, sink = VirtualTime(), ListSink()
    link = FakeLink(time)
    link.lose_at_request = 5
    bus = make_bus(time, link, [radar_slave(1)])
    await run_for(bus, time, 20.0, sink)
    assert "bus_lost" in sink.kinds() and "bus_open" in sink.kinds()
    assert link.opened == 2
    assert bus.statistics().losses == 1
    assert sum(1 for r in sink.readings if r.quantity == "distance") >= 15


async def test_not_a_number_from_a_meter_is_flagged_invalid():
    profile = parse_profile(
        {
            "name": "nan",
            "manual": "test",
            "fields": [{"quantity": "power", "unit": "W", "kind": "input", "address": 0, "type": "float32"}],
        }
    )
    slave = Slave.planned(
        "meter", 1, profile, profile.fields, PlanLimits(), interval_s=1, timeout_s=0.5, retries=0
    )
    time, sink = VirtualTime(), ListSink()
    link = FakeLink(time)
    link.words[1] = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    await run_for(make_bus(time, link, [slave]), time, 0.5, sink)
    assert sink.readings and sink.readings[0].quality & Quality.INVALID


async def test_silent_slave_turns_stale_once_and_recovers_when_data_returns():
    time, sink = VirtualTime(), ListSink()
    link = FakeLink(time)
    slave = radar_slave(1)
    slave.stale_after_s = 30.0
    bus = make_bus(time, link, [slave])
    await run_for(bus, time, 5.0, sink)
    link.dead.add(1)
    await run_for(bus, time, 100.0, sink)
    stale = [e for e in sink.events if e.kind == "stale"]
    assert len(stale) == 1 and stale[0].source == "radar1"
    link.dead.clear()
    await run_for(bus, time, 400.0, sink)
    assert [e.kind for e in sink.events if e.source == "radar1"] == ["stale", "recovered"]
