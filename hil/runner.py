"""`python -m hil.runner --config FILE`: check every sensor of a gateway config on the real hardware.

At installation or after a repair, the technician stops the agent (it holds the ports) and runs
this against the same configuration: the real drivers open the real ports, buses and the packet
forwarder's UDP port, and every enabled sensor must deliver `--readings` readings within
`--timeout` seconds. Readings are not stored or uploaded. The result is a table, or one JSON object
per sensor with `--json`; the exit status is 0 when every sensor passed, 1 when one did not, 2 for
an invalid configuration. The same runner checks the simulators in the tests, and
tests/hardware/ runs it on a real post when GATEWAY_HIL=1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.base import Driver
from gateway.cli.configfile import chosen
from gateway.config import GatewayConfig, load_config
from gateway.control import to_jsonable
from gateway.logs import LEVELS, configure_logging
from gateway.sensors import build_drivers, sensor_ids
from kernel.errors import ConfigError
from kernel.model import HealthEvent, Reading

EXIT_PASSED, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


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


def _print_table(sink: CheckSink, wanted: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("sensor", "result", "readings", "first after", "quantities", "events", title="sensor check")
    for check in sink.checks.values():
        line = check.summary(wanted)
        first = "-" if line["first_after_s"] is None else f"{line['first_after_s']} s"
        table.add_row(
            check.sensor,
            "[green]ok[/green]" if line["passed"] else "[red]FAILED[/red]",
            str(check.readings),
            first,
            ", ".join(line["quantities"]),
            "; ".join(check.events[-3:]),
        )
    console = Console()
    console.print(table)
    for text in sink.other_events:
        console.print(f"[yellow]{text}[/yellow]")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=None, help="the gateway's TOML configuration (default: as `gateway`)"
    )
    parser.add_argument("--readings", type=int, default=3, help="readings each sensor must deliver (3)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for them (60)")
    parser.add_argument("--json", action="store_true", help="one JSON object per sensor, then a summary")
    parser.add_argument("--log-level", default="warning", choices=sorted(LEVELS), help="driver logs (stderr)")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, stream=sys.stderr)  # stdout carries only the result
    if args.readings < 1 or args.timeout <= 0:
        parser.error("--readings must be >= 1 and --timeout > 0")
    args.config = chosen(args.config)  # GATEWAY_CONFIG or /etc/gateway/gateway.toml
    try:
        config = load_config(args.config)
        sink, drivers = asyncio.run(run_checks(config, args.readings, args.timeout))
    except ConfigError as exc:
        print(f"{args.config}: invalid configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    passed = sink.done()
    if args.json:
        for check in sink.checks.values():
            print(json.dumps(check.summary(args.readings)))
        summary = {"passed": passed, "sensors": len(sink.checks), "events": sink.other_events}
        print(json.dumps({**summary, "drivers": drivers}))
    else:
        _print_table(sink, args.readings)
    return EXIT_PASSED if passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
