"""`gateway modbus read|scan`: probe a Modbus bus from a technician's laptop.

Exit codes of `read`: 0 values printed, 1 the slave answered with a Modbus exception (its
name is printed), 2 no answer within the timeout, 3 the port or connection could not be used.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from drivers.modbus.errors import BusLost, ExceptionResponse, SlaveTimeout
from drivers.modbus.link import Endpoint, ModbusLink, SerialLine, TcpEndpoint
from drivers.modbus.planner import MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ
from drivers.modbus.registers import DataType, RegisterKind, WordOrder, decode_words
from drivers.modbus.registers import register_count as width_of
from gateway import control
from gateway.cli.configfile import config_option, default_config, load_or_exit
from gateway.control import RequestFailed
from kernel.errors import GatewayError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_EXCEPTION, EXIT_TIMEOUT, EXIT_BUS = 1, 2, 3


@click.group(name="modbus")
def group() -> None:
    """Read registers and scan unit ids on a Modbus RTU or TCP bus."""


def _bus_options(timeout: float) -> Callable[[F], F]:
    """The options that say which bus to open (shared by read and scan)."""
    return lambda command: _with_bus_options(command, timeout)


def _with_bus_options(command: F, timeout: float) -> F:
    options = [
        click.option("--tcp", "tcp", metavar="HOST:PORT", help="Modbus TCP server or gateway"),
        click.option("--serial", "serial", metavar="DEV", help="serial device (RS485 adapter)"),
        click.option("--baud", default=9600, show_default=True, type=int),
        click.option("--parity", default="N", show_default=True, type=click.Choice("NEO")),
        click.option("--stopbits", default=1, show_default=True, type=click.Choice(["1", "2"])),
        click.option("--timeout", default=timeout, show_default=True, type=float, help="s per request"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _endpoint(tcp: str | None, serial: str | None, baud: int, parity: str, stopbits: str) -> Endpoint:
    if (tcp is None) == (serial is None):
        raise click.UsageError("give exactly one of --tcp HOST:PORT or --serial DEV")
    if serial is not None:
        return SerialLine(serial, baud, 8, parity, int(stopbits))
    assert tcp is not None
    host, _, port = tcp.rpartition(":")
    if not host or not port.isdigit():
        raise click.UsageError(f"--tcp wants HOST:PORT, got {tcp!r}")
    return TcpEndpoint(host, int(port))


def _number(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number (decimal or 0x...)") from None


@dataclass(frozen=True)
class ReadRequest:
    """What `gateway modbus read` was asked for."""

    unit: int
    kind: RegisterKind
    address: int
    dtype: DataType
    order: WordOrder
    count: int

    @property
    def width(self) -> int:
        """Addresses per value (a string is one value of `count` registers)."""
        if self.kind.is_bit:
            return 1
        return self.count if self.dtype is DataType.STRING else width_of(self.dtype)

    @property
    def values(self) -> int:
        """How many values are printed."""
        return 1 if self.dtype is DataType.STRING else self.count


def decoded_values(request: ReadRequest, words: list[int]) -> Iterator[tuple[int, Any]]:
    """(address, value) of every value in the answer."""
    for index in range(request.values):
        start = index * request.width
        chunk = words[start : start + request.width]
        if request.kind.is_bit:
            yield request.address + index, bool(chunk[0])
        else:
            yield request.address + start, decode_words(chunk, request.dtype, request.order)


def _check_size(request: ReadRequest) -> None:
    """One request returns at most 125 registers or 2,000 bits (Modbus Application Protocol 6.1-6.4)."""
    size = request.width * request.values
    limit, what = (
        (MAX_BITS_PER_READ, "bits") if request.kind.is_bit else (MAX_REGISTERS_PER_READ, "registers")
    )
    if size > limit:
        raise click.UsageError(f"{size} {what} do not fit one read (at most {limit}); lower --count")
    if request.address + size > 0x10000:
        raise click.UsageError(f"the read runs past address 65535 ({request.address} + {size})")


async def _read_via_agent(
    config_file: Path | None,
    endpoint: Endpoint | None,
    sensor: str | None,
    request: ReadRequest,
    answer_s: float,
) -> list[int]:
    """The read queued into the running agent's bus scheduler (never interleaved with its polls)."""
    config = load_or_exit(config_file)
    selector = {"sensor": sensor} if sensor else {"endpoint": _endpoint_key(endpoint)}
    answer = await control.request(
        config.state_dir / "control.sock",
        "modbus_read",
        timeout_s=answer_s + 10.0,
        unit=request.unit,
        kind=request.kind.value,
        address=request.address,
        count=request.width * request.values,
        answer_timeout_s=answer_s,
        **selector,
    )
    return [int(word) for word in answer["words"]]


def _endpoint_key(endpoint: Endpoint | None) -> str:
    """How the agent names a bus: HOST:PORT, or the serial device."""
    if isinstance(endpoint, SerialLine):
        return endpoint.port
    return str(endpoint)


def _agent_hint(endpoint: Endpoint | None, via_agent: bool) -> str:
    """When the bus will not open and an agent runs: say so and offer the way through it."""
    if via_agent or endpoint is None:
        return ""
    socket = _installed_socket()
    if socket is None or not socket.exists():
        return ""
    return (
        f"; the agent is running and may hold {_endpoint_key(endpoint)}: "
        "read through it with the same options plus --via-agent"
    )


def _installed_socket() -> Path | None:
    from gateway.config import load_config

    try:
        return load_config(default_config()).state_dir / "control.sock"
    except GatewayError:
        return None


def _quiet_pymodbus() -> None:
    """pymodbus logs its own errors on the root logger; the command says them once, in its words."""
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL + 1)


async def _read(endpoint: Endpoint | None, request: ReadRequest, answer_s: float) -> list[int]:
    assert endpoint is not None
    link = ModbusLink(endpoint)
    await link.open(timeout_s=max(answer_s, 1.0))
    try:
        return await link.read(
            request.kind, request.unit, request.address, request.width * request.values, answer_s
        )
    finally:
        link.close()


@group.command("read")
@_bus_options(timeout=1.0)
@click.option("--unit", required=True, type=click.IntRange(0, 255), help="slave address")
@click.option("--kind", required=True, type=click.Choice([k.value for k in RegisterKind]), help="table")
@click.option("--address", required=True, callback=_number, help="0-based, decimal or 0x..")
@click.option("--type", "dtype", default="uint16", type=click.Choice([t.value for t in DataType]))
@click.option("--order", default="ABCD", type=click.Choice([o.value for o in WordOrder]))
@click.option("--count", default=1, type=click.IntRange(1, 2000), help="values (string: registers)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per value")
@click.option(
    "--via-agent", is_flag=True, help="ask the running agent that holds the bus (queued between polls)"
)
@click.option("--sensor", help="--via-agent: the bus of this configured sensor (instead of --tcp/--serial)")
@config_option
def read_command(
    tcp: str | None,
    serial: str | None,
    baud: int,
    parity: str,
    stopbits: str,
    timeout: float,
    unit: int,
    kind: str,
    address: int,
    dtype: str,
    order: str,
    count: int,
    as_json: bool,
    via_agent: bool,
    sensor: str | None,
    config_file: Path | None,
) -> None:
    """Read and decode registers (or bits) of one slave: directly, or through the running agent."""
    if sensor is not None and not via_agent:
        raise click.UsageError("--sensor goes with --via-agent")
    endpoint: Endpoint | None = None if sensor else _endpoint(tcp, serial, baud, parity, stopbits)
    request = ReadRequest(unit, RegisterKind(kind), address, DataType(dtype), WordOrder(order), count)
    if request.kind.is_bit and request.dtype is not DataType.BOOL:
        request = ReadRequest(unit, request.kind, address, DataType.BOOL, request.order, count)
    _check_size(request)
    at = f"unit {unit}, {request.kind.value} address {address}"
    _quiet_pymodbus()
    try:
        if via_agent:
            words = asyncio.run(_read_via_agent(config_file, endpoint, sensor, request, timeout))
        else:
            words = asyncio.run(_read(endpoint, request, timeout))
    except ExceptionResponse as exc:
        click.echo(f"{exc.name} ({at})", err=True)
        raise SystemExit(EXIT_EXCEPTION) from None
    except SlaveTimeout:
        click.echo(f"timeout: unit {unit} did not answer within {timeout:g} s ({at} on {endpoint})", err=True)
        raise SystemExit(EXIT_TIMEOUT) from None
    except RequestFailed as exc:
        click.echo(f"{exc} (through the agent)", err=True)
        code = {"exception_response": EXIT_EXCEPTION, "timeout": EXIT_TIMEOUT}.get(exc.code, EXIT_BUS)
        raise SystemExit(code) from None
    except (BusLost, GatewayError) as exc:
        click.echo(f"error: {exc} ({at}){_agent_hint(endpoint, via_agent)}", err=True)
        raise SystemExit(EXIT_BUS) from None
    for where, value in decoded_values(request, words):
        if as_json:
            click.echo(json.dumps({"address": where, "value": value}))
        else:
            click.echo(f"{where:>6}  {value}")


def parse_units(text: str) -> list[int]:
    """'1-5,9' -> [1, 2, 3, 4, 5, 9]."""
    units: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a unit or a range like 1-247") from None
        if not 0 <= first <= last <= 255:
            raise click.BadParameter(f"{part!r} is outside 0..255")
        units.update(range(first, last + 1))
    return sorted(units)


class ScanProgress:
    """Where a scan is, on stderr: one updating line on a terminal, a line every 25 units otherwise.

    A full scan of 247 silent units at the default 0.2 s takes ~50 s: without progress it looks hung."""

    EVERY = 25

    def __init__(self, total: int, answer_s: float) -> None:
        self.total = total
        self.answer_s = answer_s
        self.tty = sys.stderr.isatty()

    def show(self, done: int, found: int) -> None:
        """After `done` units, `found` of which answered."""
        if not self.tty and done % self.EVERY and done != self.total:
            return
        left = (self.total - done) * self.answer_s
        text = f"scanned {done}/{self.total} units, {found} answered, at most {left:.0f} s left"
        click.echo(f"\r{text}" if self.tty else text, err=True, nl=not self.tty or done == self.total)


async def _scan(
    endpoint: Endpoint, units: list[int], answer_s: float, found_one: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    link = ModbusLink(endpoint)
    await link.open(timeout_s=max(answer_s, 1.0))
    found: list[dict[str, Any]] = []
    progress = ScanProgress(len(units), answer_s)
    try:
        for done, unit in enumerate(units, 1):
            try:
                await link.read(RegisterKind.HOLDING, unit, 0, 1, answer_s)
                entry = {"unit": unit, "answer": "ok"}
            except SlaveTimeout:
                entry = None
            except ExceptionResponse as exc:
                entry = {"unit": unit, "answer": exc.name}
            if entry is not None:
                found.append(entry)
                found_one(entry)
            progress.show(done, len(found))
    finally:
        link.close()
    return found


@group.command("scan")
@_bus_options(timeout=0.2)
@click.option("--units", default="1-247", show_default=True, help="e.g. 1-247 or 1,5,10-20")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per unit that answers")
def scan_command(
    tcp: str | None,
    serial: str | None,
    baud: int,
    parity: str,
    stopbits: str,
    timeout: float,
    units: str,
    as_json: bool,
) -> None:
    """List the unit ids that answer (a Modbus exception is an answer too)."""
    endpoint = _endpoint(tcp, serial, baud, parity, stopbits)
    _quiet_pymodbus()

    def show(entry: dict[str, Any]) -> None:
        click.echo(json.dumps(entry) if as_json else f"unit {entry['unit']:>3}  {entry['answer']}")

    try:
        asyncio.run(_scan(endpoint, parse_units(units), timeout, show))
    except GatewayError as exc:
        click.echo(f"error: {exc}{_agent_hint(endpoint, False)}", err=True)
        raise SystemExit(EXIT_BUS) from None
