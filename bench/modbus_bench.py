"""Modbus RTU at a simulated 9,600 baud: our planned reads vs one request per field.

1. A 60-field profile (the first 60 fields of the shipped SDM630 map) on one slave behind a pty
   line that delivers bytes only after their time on a 9,600 baud wire (10 bits per byte).
   The same bus code polls it with our plan and with one request per field (what the
   ThingsBoard IoT gateway does), in the same run. `wire_seconds` is the time our plan needs on
   the wire at 9,600 baud 8N1 (10 bits per character): the bytes the line actually carried per
   poll (checked against 8 request + 5 + 2 x registers answer bytes per read) plus the two
   3.5-character silences the Modbus over serial line spec (V1.02, 2.5.1.1) puts after each frame.
2. Five such meters on one line, one of them dead, the four healthy ones polled every 2.5 s
   (about 70 % of the line's time): the fraction of their configured poll rate the worst healthy
   one keeps (polls done / polls configured), over the whole run, including the polls the dead
   slave costs (default timeout 0.5 s, 1 retry) before its breaker opens and its slow probes.

Prints one JSON object as its last line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from drivers.base import DriverSpec
from drivers.modbus import build_drivers
from drivers.modbus.bus import ModbusBus
from drivers.modbus.config import ModbusSection
from drivers.modbus.planner import PlannedRead, one_read_per_field, plan_reads
from drivers.modbus.profile import RegisterMap, load_profile
from hil.sims.modbus_slave import ModbusSimulator, SimulatedSlave, SlaveMode

BAUD = 9600
BITS_PER_BYTE = 10
FRAME_GAP_CHARS = 3.5
FIELDS = 60
POLLS = 7
HEALTHY_INTERVAL_S = 2.5  # four 0.43 s meter polls per 2.5 s: the bus is about 70 % busy
RATE_RUN_S = 60.0


class CountingSink:
    def __init__(self) -> None:
        self.readings = 0
        self.events: list[str] = []

    def reading(self, _reading: object) -> None:
        self.readings += 1

    def event(self, event: object) -> None:
        self.events.append(getattr(event, "kind", "?"))


def frame_bytes(reads: list[PlannedRead]) -> int:
    """Bytes of the RTU frames of these reads: request 8, answer 5 + 2 per register."""
    return sum(8 + 5 + 2 * r.count for r in reads)


def wire_seconds(carried_bytes: float, requests: int) -> float:
    """Time these bytes need at BAUD, with 3.5 silent characters after each request and answer."""
    return (carried_bytes + requests * 2 * FRAME_GAP_CHARS) * BITS_PER_BYTE / BAUD


def sixty_field_map() -> RegisterMap:
    full = load_profile("sdm630")
    return full.model_copy(update={"fields": full.fields[:FIELDS]})


async def timed_polls(bus: ModbusBus, reads: list[PlannedRead], sink: CountingSink) -> float:
    slave = bus.slaves[0]
    slave.reads = list(reads)
    durations = []
    for _ in range(POLLS):
        started = time.perf_counter()
        await bus.poll(slave, sink)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


async def requests_and_poll_time(workdir: Path) -> dict[str, float]:
    register_map = sixty_field_map()
    sim = ModbusSimulator([SimulatedSlave(1, register_map)])
    line = await sim.start_rtu(workdir / "ttyBENCH", baud=BAUD)
    section = ModbusSection(port=line.client_port, baud=BAUD, unit=1, profile="sdm630")
    [driver] = build_drivers([DriverSpec("meter", section)])
    assert isinstance(driver, ModbusBus)
    slave = driver.slaves[0]
    slave.fields = register_map.fields
    planned = plan_reads(slave.fields, register_map.limits())
    naive = one_read_per_field(slave.fields)
    sink = CountingSink()
    await driver.link.open()
    await asyncio.sleep(0.2)
    try:
        carried = line.bytes_carried
        ours = await timed_polls(driver, planned, sink)
        carried_per_poll = (line.bytes_carried - carried) / POLLS
        baseline = await timed_polls(driver, naive, sink)
    finally:
        driver.link.close()
        await sim.stop()
    if sink.readings != 2 * POLLS * FIELDS:
        raise SystemExit(f"expected {2 * POLLS * FIELDS} readings, got {sink.readings}")
    if carried_per_poll != frame_bytes(planned):
        raise SystemExit(
            f"the line carried {carried_per_poll} bytes per poll, the frames are {frame_bytes(planned)}"
        )
    if ours < carried_per_poll * BITS_PER_BYTE / BAUD:
        raise SystemExit(
            f"a poll took {ours:.4f} s, less than its bytes need: the line delay is not simulated"
        )
    return {
        "fields": FIELDS,
        "requests_per_poll": len(planned),
        "requests_per_poll_one_per_field": len(naive),
        "poll_seconds": round(ours, 4),
        "poll_seconds_one_per_field": round(baseline, 4),
        "wire_seconds": round(wire_seconds(carried_per_poll, len(planned)), 4),
    }


async def healthy_rate_with_a_dead_slave(workdir: Path) -> float:
    register_map = sixty_field_map()
    slaves = [SimulatedSlave(unit, register_map) for unit in range(1, 5)]
    slaves.append(SimulatedSlave(5, register_map, SlaveMode.DEAD))
    sim = ModbusSimulator(slaves)
    line = await sim.start_rtu(workdir / "ttyBENCH5", baud=BAUD)
    quantities = [f.quantity for f in register_map.fields]
    specs = [
        DriverSpec(
            f"meter{unit}",
            ModbusSection(
                port=line.client_port,
                baud=BAUD,
                unit=unit,
                profile="sdm630",
                fields=quantities,
                poll_interval_s=HEALTHY_INTERVAL_S,
            ),
        )
        for unit in range(1, 6)
    ]
    [driver] = build_drivers(specs)
    sink = CountingSink()
    task = asyncio.create_task(driver.run(sink))
    await asyncio.sleep(RATE_RUN_S)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sim.stop()
    stats = driver.statistics()
    healthy = [s for s in stats.slaves if s.unit != 5]
    dead = next(s for s in stats.slaves if s.unit == 5)
    if dead.state != "dead":
        raise SystemExit(f"the dead slave was never declared dead: {dead}")
    expected_polls = int(RATE_RUN_S / HEALTHY_INTERVAL_S) + 1  # a poll at t = 0 and every interval
    return min(s.polls_ok for s in healthy) / expected_polls


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = await requests_and_poll_time(Path(tmp))
        result["dead_slave_healthy_rate_fraction"] = round(await healthy_rate_with_a_dead_slave(Path(tmp)), 4)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
