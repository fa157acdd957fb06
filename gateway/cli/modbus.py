"""`gateway modbus read|scan`: probe a Modbus bus from a technician's laptop.

Exit codes of `read`: 0 values printed, 1 the slave answered with a Modbus exception (its
name is printed), 2 no answer within the timeout, 3 the port or connection could not be used.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from drivers.modbus.errors import BusLost, ExceptionResponse, SlaveTimeout
from drivers.modbus.link import Endpoint, ModbusLink, SerialLine, TcpEndpoint
from drivers.modbus.planner import MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ
from drivers.modbus.registers import DataType, RegisterKind, WordOrder, decode_words
from drivers.modbus.registers import register_count as width_of
from gateway.errors import GatewayError

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


async def _read(endpoint: Endpoint, request: ReadRequest, answer_s: float) -> list[int]:
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
) -> None:
    """Read and decode registers (or bits) of one slave."""
    endpoint = _endpoint(tcp, serial, baud, parity, stopbits)
    request = ReadRequest(unit, RegisterKind(kind), address, DataType(dtype), WordOrder(order), count)
    if request.kind.is_bit and request.dtype is not DataType.BOOL:
        request = ReadRequest(unit, request.kind, address, DataType.BOOL, request.order, count)
    _check_size(request)
    try:
        words = asyncio.run(_read(endpoint, request, timeout))
    except ExceptionResponse as exc:
        click.echo(exc.name, err=True)
        raise SystemExit(EXIT_EXCEPTION) from None
    except SlaveTimeout as exc:
        click.echo(f"timeout: {exc}", err=True)
        raise SystemExit(EXIT_TIMEOUT) from None
    except (BusLost, GatewayError) as exc:
        click.echo(f"error: {exc}", err=True)
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


async def _scan(endpoint: Endpoint, units: list[int], answer_s: float) -> list[dict[str, Any]]:
    link = ModbusLink(endpoint)
    await link.open(timeout_s=max(answer_s, 1.0))
    found: list[dict[str, Any]] = []
    try:
        for unit in units:
            try:
                await link.read(RegisterKind.HOLDING, unit, 0, 1, answer_s)
            except SlaveTimeout:
                continue
            except ExceptionResponse as exc:
                found.append({"unit": unit, "answer": exc.name})
                continue
            found.append({"unit": unit, "answer": "ok"})
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
    try:
        found = asyncio.run(_scan(endpoint, parse_units(units), timeout))
    except GatewayError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_BUS) from None
    for entry in found:
        if as_json:
            click.echo(json.dumps(entry))
        else:
            click.echo(f"unit {entry['unit']:>3}  {entry['answer']}")
