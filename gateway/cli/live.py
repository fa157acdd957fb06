"""`gateway watch|flush|selftest`: work with the running agent without stopping it (docs/control.md).

Exit codes: 0 done (selftest: every check passed), 1 the agent cannot be reached or a check failed,
2 the configuration is invalid or unreadable.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from gateway.cli.configfile import config_option, load_or_exit
from gateway.cli.views import clock_time, shown_value
from gateway.config import GatewayConfig
from gateway.control import AgentUnreachable, RequestFailed, request, subscribe
from kernel.errors import GatewayError

EXIT_FAILED = 1


def _socket(config: GatewayConfig) -> Path:
    return config.state_dir / "control.sock"


def _reading_line(reading: dict[str, Any], config: GatewayConfig) -> str:
    sensors = {s.id: s for s in config.sensors}
    sensor = sensors.get(reading["sensor"])
    step = None if sensor is None else sensor.resolution.get(reading["quantity"])
    flags = f"  [{', '.join(reading['quality'])}]" if reading["quality"] else ""
    ts = clock_time(reading["ts_ms"]) + f".{reading['ts_ms'] % 1000:03d}"
    value = shown_value(reading["value"], step)
    return f"{ts}  {reading['sensor']:<16} {reading['quantity']:<18} {value} {reading['unit']}{flags}"


async def _watch(config: GatewayConfig, arguments: dict[str, Any], as_json: bool) -> None:
    async for item in subscribe(_socket(config), "readings", **arguments):
        if "lost" in item:
            click.echo(f"({item['lost']} readings not shown: this terminal fell behind)", err=True)
        elif as_json:
            click.echo(json.dumps(item["reading"]))
        else:
            click.echo(_reading_line(item["reading"], config))


@click.command(name="watch")
@click.argument("sensor", required=False)
@config_option
@click.option("--quantity", "quantities", multiple=True, help="only this quantity (repeatable)")
@click.option(
    "--count", type=click.IntRange(min=0), default=0, help="stop after N readings (0: until Ctrl-C)"
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per reading")
def watch_command(
    sensor: str | None, config_file: Path | None, quantities: tuple[str, ...], count: int, as_json: bool
) -> None:
    """Live readings of the running agent (of one SENSOR, or all) while it keeps delivering them."""
    config = load_or_exit(config_file)
    arguments: dict[str, Any] = {"count": count}
    if sensor:
        arguments["sensors"] = [sensor]
    if quantities:
        arguments["quantities"] = list(quantities)
    try:
        asyncio.run(_watch(config, arguments, as_json))
    except KeyboardInterrupt:
        return  # Ctrl-C is how watching ends
    except GatewayError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


@click.command(name="flush")
@config_option
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(0, 60),
    default=10.0,
    show_default=True,
    help="seconds to wait for the backlog to be acknowledged",
)
@click.option("--json", "as_json", is_flag=True, help="the agent's answer as JSON")
def flush_command(config_file: Path | None, wait_s: float, as_json: bool) -> None:
    """Seal what the agent holds now, reconnect its uplink now, and wait for the backlog to drain."""
    config = load_or_exit(config_file)
    try:
        answer = asyncio.run(request(_socket(config), "flush", timeout_s=wait_s + 5.0, wait_s=wait_s))
    except GatewayError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(answer))
    else:
        reconnect = ", reconnecting now" if answer["reconnecting"] else ""
        click.echo(f"sealed {answer['sealed_batches']} batches; uplink {answer['uplink']}{reconnect}")
        left = answer["backlog_batches"]
        click.echo(
            "backlog: empty" if not left else f"backlog: {left} batches still waiting after {wait_s:g} s"
        )
    sys.exit(0 if answer["drained"] else EXIT_FAILED)


async def _selftest(config: GatewayConfig, timeout_s: float) -> dict[str, Any]:
    try:
        result = await request(_socket(config), "selftest", timeout_s=10.0)
        return {**result, "mode": "agent"}
    except AgentUnreachable as exc:
        if not exc.absent:
            raise
    from gateway import selftest

    checks = await selftest.run_offline(config, timeout_s)
    return {"checks": [c.as_json() for c in checks], **selftest.summary(checks), "mode": "agent stopped"}


@click.command(name="selftest")
@config_option
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="agent stopped: seconds each sensor has to deliver a reading",
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per check, then a summary")
def selftest_command(config_file: Path | None, timeout_s: float, as_json: bool) -> None:
    """Every sensor delivering, uplink connected and acknowledging, clock synchronised, disk, key, coder.

    Asks the running agent; when no agent runs, starts the configured drivers itself."""
    from gateway.logs import configure_logging

    config = load_or_exit(config_file)
    configure_logging("warning", stream=sys.stderr)  # stdout carries only the result
    try:
        result = asyncio.run(_selftest(config, timeout_s))
    except (GatewayError, RequestFailed) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        for check in result["checks"]:
            click.echo(json.dumps(check))
        click.echo(json.dumps({k: v for k, v in result.items() if k != "checks"}))
    else:
        from gateway.cli.views import render_selftest

        render_selftest(result)
    sys.exit(0 if result["passed"] else EXIT_FAILED)
