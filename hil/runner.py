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
from collections.abc import Sequence
from pathlib import Path

from gateway.cli.configfile import chosen
from gateway.config import load_config
from gateway.logs import LEVELS, configure_logging
from gateway.sensorcheck import CheckSink, run_checks
from kernel.errors import ConfigError

EXIT_PASSED, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


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
