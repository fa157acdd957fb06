"""Thin async transport: one pymodbus client (RTU over serial, or TCP), errors translated.

pymodbus' own retry, reconnect and "close after N silent requests" logic is switched off: one
dead slave must never close the bus for the others, so retries, timeouts and reopening belong
to the bus scheduler (drivers.modbus.bus).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from drivers.modbus.errors import BusLost, ExceptionResponse, SlaveTimeout, StrayAnswer
from drivers.modbus.registers import RegisterKind
from kernel.errors import ProtocolError

#: pymodbus' own response timeout; ours (asyncio.timeout per request) is always shorter
_LIBRARY_TIMEOUT_S = 60.0
_NEVER_DISCONNECT = 1 << 30
#: the function code that reads each table (an exception answer sets bit 0x80 on it)
FUNCTION_CODES = {
    RegisterKind.COIL: 1,
    RegisterKind.DISCRETE: 2,
    RegisterKind.HOLDING: 3,
    RegisterKind.INPUT: 4,
}


@dataclass(frozen=True, slots=True)
class SerialLine:
    """Settings of an RS485 line."""

    port: str
    baud: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @property
    def char_s(self) -> float:
        """Seconds one character takes on the wire (start + data + parity + stop bits)."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baud

    def __str__(self) -> str:
        return f"{self.port}@{self.baud}{self.parity}{self.stopbits}"


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    """A Modbus TCP server (or an RTU-over-TCP gateway)."""

    host: str
    port: int = 502

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


Endpoint = SerialLine | TcpEndpoint


def _new_client(endpoint: Endpoint) -> ModbusBaseClient:
    if isinstance(endpoint, SerialLine):
        client: ModbusBaseClient = AsyncModbusSerialClient(
            endpoint.port,
            baudrate=endpoint.baud,
            bytesize=endpoint.bytesize,
            parity=endpoint.parity,
            stopbits=endpoint.stopbits,
            reconnect_delay=0,
            timeout=_LIBRARY_TIMEOUT_S,
            retries=0,
        )
    else:
        client = AsyncModbusTcpClient(
            endpoint.host,
            port=endpoint.port,
            reconnect_delay=0,
            timeout=_LIBRARY_TIMEOUT_S,
            retries=0,
        )
    client.set_max_no_responses(_NEVER_DISCONNECT)
    return client


class ModbusLink:
    """One open serial port or TCP connection; `read` is one request and its answer."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._client: ModbusBaseClient | None = None

    @property
    def is_open(self) -> bool:
        """Whether the port/connection is up (False after an unplug is noticed)."""
        return self._client is not None and self._client.connected

    async def open(self, timeout_s: float = 5.0) -> None:
        """Open the port or connect; BusLost when that fails."""
        self.close()
        client = _new_client(self.endpoint)
        cancels = _cancel_requests()
        try:
            async with asyncio.timeout(timeout_s):
                ok = await client.connect()
            _keep_cancellation(cancels)
        except (TimeoutError, OSError) as exc:
            client.close()
            raise BusLost(f"{self.endpoint}: cannot open: {exc}") from exc
        except asyncio.CancelledError:
            client.close()
            raise
        if not ok:
            client.close()
            raise BusLost(f"{self.endpoint}: cannot open")
        self._client = client

    def close(self) -> None:
        """Close the port (idempotent)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _request(
        self, client: ModbusBaseClient, kind: RegisterKind, unit: int, address: int, count: int
    ) -> Awaitable[ModbusPDU]:
        call: Callable[..., Awaitable[ModbusPDU]] = {
            RegisterKind.COIL: client.read_coils,
            RegisterKind.DISCRETE: client.read_discrete_inputs,
            RegisterKind.HOLDING: client.read_holding_registers,
            RegisterKind.INPUT: client.read_input_registers,
        }[kind]
        return call(address, count=count, device_id=unit)

    async def read(
        self, kind: RegisterKind, unit: int, address: int, count: int, timeout_s: float
    ) -> list[int]:
        """Read `count` registers (or bits, as 0/1) of one slave.

        Raises SlaveTimeout (no answer; StrayAnswer: an answer to another request),
        ExceptionResponse (the slave refused), BusLost (port/connection gone) or
        ProtocolError (a frame pymodbus cannot make sense of).
        """
        client = self._client
        if client is None or not client.connected:
            raise BusLost(f"{self.endpoint}: not open")
        cancels = _cancel_requests()
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._request(client, kind, unit, address, count)
            _keep_cancellation(cancels)
        except TimeoutError:
            if not client.connected:
                raise BusLost(f"{self.endpoint}: lost while waiting for unit {unit}") from None
            raise SlaveTimeout(unit) from None
        except ConnectionException as exc:
            raise BusLost(f"{self.endpoint}: {exc}") from exc
        except ModbusException as exc:
            raise ProtocolError(f"{self.endpoint}: unit {unit}: {exc}") from exc
        return _values(response, kind, unit, count)


def _cancel_requests() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _keep_cancellation(before: int) -> None:
    """Re-raise a cancellation pymodbus swallowed.

    pymodbus awaits with `asyncio.wait_for`, which in Python 3.11 returns the result and drops
    the cancellation when both arrive together: the driver would then never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


def _values(response: ModbusPDU, kind: RegisterKind, unit: int, count: int) -> list[int]:
    """The registers (or bits) of an answer, after checking that it answers this request."""
    function_code = int(response.function_code) & 0x7F
    if function_code != FUNCTION_CODES[kind]:
        raise StrayAnswer(unit, f"got an answer to function code {function_code} instead")
    if response.isError():
        raise ExceptionResponse(unit, int(getattr(response, "exception_code", 0)))
    if kind.is_bit:
        # bits come packed in whole bytes: more than asked is padding, fewer is another answer
        if len(response.bits) < count or len(response.bits) >= count + 8:
            raise StrayAnswer(unit, f"got {len(response.bits)} bits for {count} asked")
        return [int(b) for b in response.bits[:count]]
    if len(response.registers) != count:
        raise StrayAnswer(unit, f"got {len(response.registers)} registers for {count} asked")
    return list(response.registers)
