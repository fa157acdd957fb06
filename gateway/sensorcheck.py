"""Every configured sensor must deliver readings: the check behind `gateway selftest --offline` and
`python -m hil.runner` (the technician's and the tests' runner of it).

The drivers run against a sink that only counts; nothing is stored or uploaded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.base import Driver
from gateway.config import GatewayConfig
from gateway.control import to_jsonable
from gateway.sensors import build_drivers, sensor_ids
from kernel.model import HealthEvent, Reading


@dataclass
class SensorCheck:
    """What one sensor delivered during the check."""

    sensor: str
    readings: int = 0
    quantities: set[str] = field(default_factory=set)
    first_after_s: float | None = None
    events: list[str] = field(default_factory=list)

    def passed(self, wanted: int) -> bool:
        """Whether the sensor delivered enough readings."""
        return self.readings >= wanted

    def summary(self, wanted: int) -> dict[str, Any]:
        """One JSON-able line of the result."""
        return {
            "sensor": self.sensor,
            "passed": self.passed(wanted),
            "readings": self.readings,
            "quantities": sorted(self.quantities),
            "first_after_s": None if self.first_after_s is None else round(self.first_after_s, 2),
            "events": self.events,
        }


class CheckSink:
    """Counts what the drivers emit, per sensor; events of buses and forwarders are kept apart."""

    def __init__(self, sensors: Sequence[str], wanted: int) -> None:
        self.started = time.monotonic()
        self.wanted = wanted
        self.checks = {sensor: SensorCheck(sensor) for sensor in sensors}
        self.other_events: list[str] = []
        #: set once every sensor delivered `wanted` readings
        self.complete = asyncio.Event()
        if self.done():
            self.complete.set()

    def reading(self, reading: Reading) -> None:
        """Count one reading of a configured sensor (others, e.g. gateway health, are ignored)."""
        check = self.checks.get(reading.sensor)
        if check is None:
            return
        check.readings += 1
        check.quantities.add(reading.quantity)
        if check.first_after_s is None:
            check.first_after_s = time.monotonic() - self.started
        if check.readings == self.wanted and self.done():
            self.complete.set()

    def event(self, event: HealthEvent) -> None:
        """Keep a health event with the sensor it names."""
        text = f"{event.kind}: {event.detail}" if event.detail else event.kind
        check = self.checks.get(event.source)
        (check.events if check is not None else self.other_events).append(text)

    def done(self) -> bool:
        """Whether every sensor delivered enough readings."""
        return all(check.passed(self.wanted) for check in self.checks.values())


async def run_checks(config: GatewayConfig, wanted: int, timeout_s: float) -> tuple[CheckSink, list[Any]]:
    """Run the config's drivers until every sensor delivered `wanted` readings, every driver gave
    up, or the time is up."""
    sink = CheckSink(sensor_ids(config), wanted)
    drivers = build_drivers(config)
    failures: list[str] = []
    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(_run(driver, sink, failures)) for driver in drivers]
        watchers = {tasks.create_task(sink.complete.wait()), tasks.create_task(_all_stopped(running))}
        await asyncio.wait(watchers, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for task in [*running, *watchers]:
            task.cancel()
    sink.other_events += failures
    return sink, [{"driver": d.name, "statistics": to_jsonable(d.statistics())} for d in drivers]


async def _all_stopped(running: Sequence[asyncio.Task[None]]) -> None:
    if running:
        await asyncio.wait(running)


async def _run(driver: Driver, sink: CheckSink, failures: list[str]) -> None:
    """One driver; a driver that gives up is a failed check, not a crash of the runner."""
    try:
        await driver.run(sink)
    except Exception as exc:
        failures.append(f"driver {driver.name} stopped: {type(exc).__name__}: {exc}")
