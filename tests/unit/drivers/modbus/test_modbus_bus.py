"""Bus scheduler on a virtual clock with a fake link we own: rates, breaker, exceptions, reopen."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import struct
from collections import Counter

import structlog.testing

from drivers.base import Sink
from drivers.modbus.breaker import SlaveBreaker
from drivers.modbus.bus import BusTiming, ModbusBus
from drivers.modbus.errors import BusLost, ExceptionResponse, SlaveTimeout
from drivers.modbus.planner import PlanLimits
from drivers.modbus.profile import load_profile, parse_profile
from drivers.modbus.slave import Slave
from kernel.backoff import Backoff
from kernel.model import Quality

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
        #: units slower than their timeout: seconds from request to answer
        self.latency: dict[int, float] = {}
        #: answers of slow units still on their way: (arrival, unit, address, count)
        self.late: list[tuple[float, int, int, int]] = []
        #: ("open", when, when) and ("read", start, end) in the order they happened
        self.timeline: list[tuple[str, float, float]] = []
        self.in_flight = self.max_in_flight = 0
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self, timeout_s: float = 5.0) -> None:
        self.opened += 1
        self._open = True
        self.timeline.append(("open", self.time.now, self.time.now))

    def close(self) -> None:
        self._open = False

    async def read(self, kind, unit, address, count, timeout_s):
        start = self.time.now
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(kind, unit, address, count, timeout_s)
        finally:
            self.in_flight -= 1
            self.timeline.append(("read", start, self.time.now))

    async def _answer(self, kind, unit, address, count, timeout_s):
        await asyncio.sleep(0)
        self.requests[unit] += 1
        if self.lose_at_request == sum(self.requests.values()):
            self._open = False
            raise BusLost("unplugged")
        if unit in self.dead:
            self.time.now += timeout_s
            raise SlaveTimeout(unit)
        if unit in self.latency:
            return self.slow_answer(unit, address, count, timeout_s)
        self.time.now += (8 + 5 + 2 * count) * CHAR_S
        if unit in self.refusing:
            raise ExceptionResponse(unit, self.refusing[unit])
        if any(address <= hole < address + count for hole in self.holes):
            raise ExceptionResponse(unit, 2)
        if unit in self.words:
            return self.words[unit][:count]
        return [a & 0xFFFF for a in range(address, address + count)]

    def slow_answer(self, unit: int, address: int, count: int, timeout_s: float) -> list[int]:
        """Like RTU: the first answer of that unit to arrive is taken, whichever request it answers."""
        now = self.time.now
        self.late = [a for a in self.late if a[0] >= now]  # nobody waited for these: dropped
        self.late.append((now + self.latency[unit], unit, address, count))
        arriving = [a for a in self.late if a[1] == unit and a[0] <= now + timeout_s]
        if not arriving:
            self.time.now = now + timeout_s
            raise SlaveTimeout(unit)
        first = min(arriving)
        self.late.remove(first)
        self.time.now = first[0]
        return [a & 0xFFFF for a in range(first[2], first[2] + first[3])]


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


async def run_for(bus: ModbusBus, time: VirtualTime, seconds: float, sink: Sink) -> None:
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


async def test_one_request_at_a_time_with_the_connect_gap_and_the_gap_between_requests(sink):
    time = VirtualTime()
    link = FakeLink(time)
    link.dead.add(3)
    link.lose_at_request = 20  # an unplug: the gap after connecting applies again
    bus = make_bus(time, link, [radar_slave(1, max_gap=0), radar_slave(2, max_gap=0), radar_slave(3)])
    await run_for(bus, time, 30.0, sink)
    assert link.max_in_flight == 1
    assert link.opened == 2
    reads = 0
    for (kind, _, before), (next_kind, start, _) in itertools.pairwise(link.timeline):
        if next_kind != "read":
            continue
        reads += 1
        gap = 0.1 if kind == "open" else 3.5 * CHAR_S
        assert start - before >= gap - 1e-9, (kind, before, start)
    assert reads > 50


async def test_one_dead_slave_of_five_leaves_the_others_their_poll_rate(sink):
    time = VirtualTime()
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


async def test_each_slave_keeps_its_own_timeout_and_retries(sink):
    time = VirtualTime()
    link = FakeLink(time)
    link.dead.update({1, 2})
    patient, hasty = radar_slave(1), radar_slave(2)
    patient.timeout_s, patient.retries = 2.0, 2
    hasty.timeout_s, hasty.retries = 0.2, 0
    waited: dict[int, list[float]] = {1: [], 2: []}
    read = link.read

    async def timed_read(kind, unit, address, count, timeout_s):
        waited[unit].append(timeout_s)
        return await read(kind, unit, address, count, timeout_s)

    link.read = timed_read
    at_death: dict[int, list[float]] = {}

    record = sink.event

    def noting_deaths(event) -> None:
        record(event)
        if event.kind == "slave_dead":
            unit = 1 if event.detail.startswith("radar1") else 2
            at_death[unit] = list(waited[unit])

    sink.event = noting_deaths
    await run_for(make_bus(time, link, [patient, hasty]), time, 60.0, sink)
    # three failed polls open each breaker: 3 x (1 + retries) requests, each with its own timeout
    assert at_death == {1: [2.0] * 9, 2: [0.2] * 3}
    # afterwards probes are single requests, still with the slave's own timeout
    assert set(waited[1]) == {2.0} and set(waited[2]) == {0.2}


async def test_dead_slave_is_noticed_again_when_it_answers(sink):
    time = VirtualTime()
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


async def test_exception_response_flags_readings_and_is_reported_once_per_change(sink):
    time = VirtualTime()
    link = FakeLink(time)
    link.refusing[2] = 6
    bus = make_bus(time, link, [radar_slave(1), radar_slave(2)])
    await run_for(bus, time, 20.0, sink)
    refused = [r for r in sink.readings if r.sensor == "radar2"]
    assert {r.quantity for r in refused} == {"distance", "water_level", "installation_height"}
    assert all(math.isnan(r.value) and r.quality & Quality.DEVICE_WARNING for r in refused)
    assert all(r.quality == Quality.OK for r in sink.readings if r.sensor == "radar1")
    assert sink.kinds().count("exception_response") == 1
    assert "SERVER_DEVICE_BUSY" in next(e.detail for e in sink.events if e.kind == "exception_response")
    stats = {s.unit: s for s in bus.statistics().slaves}
    assert stats[2].state == "alive" and stats[2].exception_responses >= 15
    del link.refusing[2]
    seen = len(sink.readings)
    await run_for(bus, time, 5.0, sink)
    assert sink.kinds().count("exception_cleared") == 1
    assert sink.kinds().count("exception_response") == 1
    fresh = [r for r in sink.readings[seen:] if r.sensor == "radar2"]
    assert fresh and all(r.quality == Quality.OK for r in fresh)


async def test_readings_carry_profile_quantity_unit_and_scaled_value(sink):
    time = VirtualTime()
    link = FakeLink(time)
    bus = make_bus(time, link, [radar_slave(1)])
    await run_for(bus, time, 1.5, sink)
    first = {r.quantity: r for r in sink.readings[:3]}
    assert first["distance"].value == 0.001  # register 1 holds 1 (mm) -> 0.001 m
    assert first["distance"].unit == "m"
    assert first["installation_height"].value == 0.05  # register 5 holds 5 (cm)
    assert first["water_level"].sensor == "radar1"
    assert first["distance"].ts_ms >= 1_700_000_000_000


async def test_merged_read_refused_for_a_hole_falls_back_to_one_read_per_field(sink):
    time = VirtualTime()
    link = FakeLink(time)
    link.holes = {2, 4}
    slave = radar_slave(1)
    assert len(slave.reads) == 1
    bus = make_bus(time, link, [slave])
    await run_for(bus, time, 0.5, sink)  # the first poll only
    assert len(slave.reads) == 3
    # the fields the device does serve are read in that same poll, none is flagged
    assert {r.quantity for r in sink.readings} == {"distance", "water_level", "installation_height"}
    assert all(r.quality == Quality.OK for r in sink.readings)
    assert "exception_response" not in sink.kinds()


async def test_late_answers_of_a_slow_slave_are_never_taken_for_another_read(sink):
    profile = parse_profile(
        {
            "name": "two",
            "manual": "test",
            "fields": [
                {"quantity": "low", "unit": "1", "kind": "holding", "address": 10, "type": "uint16"},
                {"quantity": "high", "unit": "1", "kind": "holding", "address": 300, "type": "uint16"},
            ],
        }
    )
    # same function code, same size: nothing in the answer tells the two reads apart
    slow = Slave.planned(
        "slow", 3, profile, profile.fields, PlanLimits(), interval_s=2, timeout_s=1, retries=1
    )
    assert len(slow.reads) == 2
    time = VirtualTime()
    link = FakeLink(time)
    link.latency[3] = 1.5  # slower than its timeout: only a retry catches the answer
    bus = make_bus(time, link, [slow, radar_slave(1)])
    await run_for(bus, time, 60.0, sink)
    mine = [r for r in sink.readings if r.sensor == "slow"]
    assert {r.quantity for r in mine} == {"low", "high"}
    assert all(r.value == {"low": 10, "high": 300}[r.quantity] for r in mine)
    assert all(r.value == {"distance": 0.001, "water_level": 0.003}.get(r.quantity, 0.05)
               for r in sink.readings if r.sensor == "radar1")  # fmt: skip


async def test_lost_port_is_reopened_and_polling_goes_on(sink):
    time = VirtualTime()
    link = FakeLink(time)
    link.lose_at_request = 5
    bus = make_bus(time, link, [radar_slave(1)])
    await run_for(bus, time, 20.0, sink)
    assert "bus_lost" in sink.kinds() and "bus_open" in sink.kinds()
    assert link.opened == 2
    assert bus.statistics().losses == 1
    assert sum(1 for r in sink.readings if r.quantity == "distance") >= 15


async def test_not_a_number_from_a_meter_is_flagged_invalid(sink):
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
    time = VirtualTime()
    link = FakeLink(time)
    link.words[1] = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    await run_for(make_bus(time, link, [slave]), time, 0.5, sink)
    assert sink.readings and sink.readings[0].quality & Quality.INVALID


async def test_silent_slave_turns_stale_once_and_recovers_when_data_returns(sink):
    time = VirtualTime()
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


async def test_a_failing_slave_warns_once_then_debug_then_info_when_it_answers_again(sink):
    time = VirtualTime()
    link = FakeLink(time)
    link.dead.add(1)
    bus = make_bus(time, link, [radar_slave(1)])
    with structlog.testing.capture_logs() as logs:
        await run_for(bus, time, 14.0, sink)  # two failed polls (three attempts each): not dead yet
        link.dead.clear()
        await run_for(bus, time, 10.0, sink)
    events = [(entry["log_level"], entry["event"]) for entry in logs if "poll" in entry["event"]]
    assert events[0] == ("warning", "modbus poll failed")
    assert ("debug", "modbus poll failed again") in events
    assert events.count(("warning", "modbus poll failed")) == 1
    assert events[-1] == ("info", "modbus poll recovered")
    assert "slave_dead" not in sink.kinds()
