"""`gateway serial probe|sniff`: what a technician at the lamppost needs to see on a serial line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import string
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from drivers.serial import PROTOCOLS, codec_for, poller_for
from drivers.serial.codec import Codec, Sample
from drivers.serial.config import PollingOptions, RegexField, RegexOptions, SerialSection
from drivers.serial.ports import BY_ID, unstable_name_advice
from drivers.serial.transport import SerialLine
from gateway.cli.configfile import chosen, config_option, load_or_exit
from gateway.health import quality_names
from kernel.errors import DeviceError, GatewayError, ProtocolError
from kernel.wallclock import now_ms

_PRINTABLE = frozenset(string.printable.encode()) - frozenset(b"\t\n\r\x0b\x0c")


@click.group(name="serial")
def group() -> None:
    """Look at serial sensors: decode one live (probe) or dump raw bytes (sniff)."""


def _clock(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def _section(port: str, protocol: str, baud: int, pattern: str | None, query: bool) -> SerialSection:
    regex = None
    if protocol == "regex":
        if not pattern:
            raise click.UsageError("--protocol regex needs --pattern with named groups (?P<name>...)")
        try:
            groups = re.compile(pattern).groupindex
        except re.error as exc:
            raise click.UsageError(f"--pattern is not a valid regex: {exc}") from None
        if not groups:
            raise click.UsageError("--pattern has no named groups (?P<name>...)")
        fields = {name: RegexField(quantity=name.lower(), unit="1") for name in groups}
        regex = RegexOptions(pattern=pattern, fields=fields)
    polling = PollingOptions(mode="query" if query else "active", setup=False)
    return SerialSection.model_validate(
        {"port": port, "baud": baud, "protocol": protocol, "regex": regex, "polling": polling}
    )


def _note_port_name(port: str) -> None:
    """Tell the technician the by-id name to put in the config when PORT is a numbered device."""
    if advice := unstable_name_advice(port):
        click.echo(f"note: {advice}", err=True)


@group.command("probe")
@click.argument("port")
@click.option("--protocol", type=click.Choice(PROTOCOLS), help="codec to decode with (not with --via-agent)")
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--count", type=int, default=0, help="exit 0 after N readings (0: until Ctrl-C)")
@click.option("--timeout", "timeout_s", type=float, default=0, help="exit 1 if no reading within S seconds")
@click.option("--query", is_flag=True, help="sds011/pms5003/wxt: poll the sensor once a second")
@click.option("--pattern", help="regex: a pattern whose named groups become quantities")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per reading")
@click.option("--via-agent", is_flag=True, help="the agent holds PORT: show the readings it decodes from it")
@config_option
def probe_command(
    port: str,
    protocol: str | None,
    baud: int,
    count: int,
    timeout_s: float,
    query: bool,
    pattern: str | None,
    as_json: bool,
    via_agent: bool,
    config_file: Path | None,
) -> None:
    """Open PORT and print decoded readings as they arrive (protocol errors go to stderr)."""
    if via_agent:
        _probe_via_agent(port, count, timeout_s, as_json, config_file)
        return
    if protocol is None:
        raise click.UsageError("--protocol is required (or --via-agent, when the agent holds the port)")
    section = _section(port, protocol, baud, pattern, query)
    _note_port_name(port)
    tally = _Tally()
    try:
        asyncio.run(_probe(section, count, timeout_s, as_json, tally))
    except KeyboardInterrupt:
        return
    except DeviceError as exc:
        raise click.ClickException(open_failure_hint(port, str(exc), config_file)) from None
    if timeout_s and count and tally.shown < count:
        message = f"only {tally.shown} of {count} readings within {timeout_s:g} s"
        if tally.bytes and not tally.shown:
            message += (
                f"; {tally.bytes} bytes arrived but no {protocol} frame: another protocol or baud rate?"
                f" (gateway serial sniff {port} --baud {baud} shows them)"
            )
        elif not tally.bytes:
            message += "; nothing arrived at all (wiring, power, or a sensor that must be polled: --query)"
        raise click.ClickException(message)


def _probe_via_agent(
    port: str, count: int, timeout_s: float, as_json: bool, config_file: Path | None
) -> None:
    """The readings the running agent decodes from the sensor on PORT, as `probe` prints them."""
    from gateway.control import subscribe

    config = load_or_exit(config_file)
    sensor = _configured_sensor(port, config_file)
    if sensor is None:
        raise click.ClickException(f"no sensor of the agent's configuration is on {port}")

    async def stream() -> int:
        shown = 0
        socket = config.state_dir / "control.sock"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s or None):
                async for item in subscribe(socket, "readings", sensors=[sensor], count=count):
                    if "reading" in item:
                        r = item["reading"]
                        _print_reading(
                            r["ts_ms"], r["quantity"], r["value"], r["unit"], r["quality"], as_json
                        )
                        shown += 1
        return shown

    try:
        shown = asyncio.run(stream())
    except KeyboardInterrupt:
        return
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None
    if timeout_s and count and shown < count:
        raise click.ClickException(f"only {shown} of {count} readings of {sensor} within {timeout_s:g} s")


def open_failure_hint(port: str, error: str, config_file: Path | None = None) -> str:
    """What a technician can do when PORT does not open: plug it in, or go through the agent that holds it."""
    if not Path(port).exists():
        return f"{port} does not exist: is the adapter plugged in? (ls -l {BY_ID}/)"
    if "lock" in error or "busy" in error.lower():
        holder = _configured_sensor(port, config_file)
        via = (
            f"gateway serial probe {port} --via-agent (or gateway watch {holder})"
            if holder
            else "gateway watch SENSOR"
        )
        return (
            f"{port} is held by another process, normally the running agent: read it through the agent: {via}"
        )
    return error


def _configured_sensor(port: str, config_file: Path | None = None) -> str | None:
    """The sensor of the agent's configuration on `port`, if that file is readable."""
    from gateway.config import load_config
    from kernel.errors import ConfigError

    try:
        config = load_config(chosen(config_file))
    except ConfigError:
        return None
    for sensor in config.sensors:
        section = getattr(sensor, "serial", None) or getattr(sensor, "lora_modem", None)
        if section is not None and str(getattr(section, "port", "")) == port:
            return sensor.id
    return None


@dataclass
class _Tally:
    shown: int = 0
    bytes: int = 0


async def _probe(section: SerialSection, count: int, timeout_s: float, as_json: bool, tally: _Tally) -> int:
    line = await SerialLine.open(section)
    codec = codec_for(section)
    poller = poller_for(section)
    try:
        async with asyncio.timeout(timeout_s or None):
            try:
                async with asyncio.TaskGroup() as tasks:
                    polling = tasks.create_task(poller.drive(line)) if poller else None
                    await _print_readings(line, codec, count, as_json, tally)
                    if polling:
                        polling.cancel()
            except* DeviceError as group:
                raise group.exceptions[0] from None
    except TimeoutError:
        pass
    finally:
        await line.close()
    return tally.shown


async def _print_readings(line: SerialLine, codec: Codec, count: int, as_json: bool, tally: _Tally) -> None:
    while not count or tally.shown < count:
        data = await line.read()
        ts_ms = now_ms()
        tally.bytes += len(data)
        codec.feed(data)
        for event in codec.events():
            if isinstance(event, ProtocolError):
                click.echo(f"{_clock(ts_ms)} ! {type(event).__name__}: {event}", err=True)
            if not isinstance(event, Sample):
                continue
            for m in event.measurements:
                if count and tally.shown >= count:
                    break
                tally.shown += 1
                _print_reading(ts_ms, m.quantity, m.value, m.unit, int(m.quality), as_json)


def _print_reading(
    ts_ms: int, quantity: str, value: float, unit: str, quality: int | list[str], as_json: bool
) -> None:
    if as_json:
        record: dict[str, Any] = {"ts_ms": ts_ms, "quantity": quantity, "value": value, "unit": unit}
        click.echo(json.dumps(record))
    else:
        names = quality_names(quality) if isinstance(quality, int) else quality
        flag = f"  [{', '.join(names)}]" if names else ""
        click.echo(f"{_clock(ts_ms)}  {quantity:<24} {value:>12g} {unit}{flag}")
    sys.stdout.flush()


@group.command("sniff")
@click.argument("port")
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--duration", "duration_s", type=float, default=0, help="stop after S seconds (0: Ctrl-C)")
@click.option("--json", "as_json", is_flag=True, help='one {"ts_ms", "hex"} object per chunk received')
def sniff_command(port: str, baud: int, duration_s: float, as_json: bool) -> None:
    """Print a timestamped hex/ASCII dump of whatever PORT sends (for devices nobody documented)."""
    section = SerialSection(port=port, baud=baud)
    _note_port_name(port)
    try:
        asyncio.run(_sniff(section, duration_s, as_json))
    except KeyboardInterrupt:
        return
    except DeviceError as exc:
        raise click.ClickException(open_failure_hint(port, str(exc))) from None


async def _sniff(section: SerialSection, duration_s: float, as_json: bool) -> None:
    line = await SerialLine.open(section)
    started = time.monotonic()
    try:
        async with asyncio.timeout(duration_s or None):
            while True:
                data = await line.read()
                ts_ms = now_ms()
                if as_json:
                    click.echo(json.dumps({"ts_ms": ts_ms, "hex": data.hex()}))
                else:
                    click.echo(hex_dump(data, f"{_clock(ts_ms)} +{time.monotonic() - started:8.3f}s"))
                sys.stdout.flush()
    except TimeoutError:
        pass
    finally:
        await line.close()


def hex_dump(data: bytes, stamp: str) -> str:
    """16 bytes per row: hex, then the printable ASCII (dots for the rest); the stamp on the first row."""
    rows = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        text = "".join(chr(b) if b in _PRINTABLE else "." for b in chunk)
        prefix = stamp if offset == 0 else " " * len(stamp)
        rows.append(f"{prefix}  {chunk.hex(' '):<47}  |{text}|")
    return "\n".join(rows)
