"""Modbus slaves built on pymodbus' server, serving the shipped profiles with changing values.

Each simulated slave has a mode a test can switch at any time:
`normal`, `dead` (never answers), `slow` (answers after `slow_s`) and `exception` (answers every
read with `exception_code`, default 6 = server device busy). A slow slave answers every request,
also the ones its master has given up on: with `slow_s` above the master's timeout its answers
come late, as a real slow slave's do. Unknown unit ids do not answer, as on a real RS485 bus. Run over TCP or, with hil.sims.modbus_line, RTU over a pty pair:

    python -m hil.sims.modbus_slave --tcp 127.0.0.1:5020 --slave 1:sdm630 --slave 2:radar_level:dead
    python -m hil.sims.modbus_slave --rtu /tmp/ttyMODBUS --baud 9600 --slave 1:analog_4_20ma

It prints one JSON line saying where it listens, then serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from drivers.modbus.profile import RegisterField, RegisterMap, load_profile
from drivers.modbus.registers import RegisterKind, encode_value
from hil.sims.modbus_line import PtyLine

#: typical value and swing of a quantity, by unit (energy counters grow instead)
_TYPICAL = {
    "V": (230.0, 3.0),
    "A": (5.0, 2.0),
    "W": (1000.0, 300.0),
    "VA": (1100.0, 300.0),
    "var": (200.0, 50.0),
    "/": (0.95, 0.03),
    "deg": (20.0, 5.0),
    "Hz": (50.0, 0.05),
    "%": (3.0, 1.0),
    "mA": (12.0, 4.0),
    "m": (2.5, 0.3),
    "1": (3.0, 0.0),
}
_COUNTERS = {"Wh", "varh", "VAh", "Ah"}
_TABLE_OF_FUNCTION = {
    1: RegisterKind.COIL,
    2: RegisterKind.DISCRETE,
    3: RegisterKind.HOLDING,
    4: RegisterKind.INPUT,
}
_TABLES = (RegisterKind.COIL, RegisterKind.DISCRETE, RegisterKind.HOLDING, RegisterKind.INPUT)


class SlaveMode(enum.StrEnum):
    """How a simulated slave behaves."""

    NORMAL = "normal"
    DEAD = "dead"
    SLOW = "slow"
    EXCEPTION = "exception"


def simulated_value(item: RegisterField, index: int, t: float) -> float:
    """The engineering value a field shows at time t (seconds since the slave started)."""
    if item.unit in _COUNTERS:
        return 1_000_000.0 + 50.0 * t + 1000.0 * index
    if item.quantity == "installation_height":
        return 5.0
    base, swing = _TYPICAL.get(item.unit, (10.0, 1.0))
    return base + swing * math.sin(2 * math.pi * t / 60.0 + index)


def _raw(item: RegisterField, value: float) -> float:
    raw = (value - item.offset) / item.scale
    return raw if item.dtype.value.startswith("float") else round(raw)


@dataclass
class SimulatedSlave:
    """One slave: a unit id serving a profile, with a switchable misbehaviour."""

    unit: int
    register_map: RegisterMap
    mode: SlaveMode = SlaveMode.NORMAL
    slow_s: float = 0.3
    exception_code: int = ExcCodes.DEVICE_BUSY
    #: True: addresses between fields answer ILLEGAL_DATA_ADDRESS (strict devices)
    refuse_holes: bool = False
    requests: int = 0
    started: float = field(default_factory=time.monotonic)

    def words_now(self, kind: RegisterKind) -> dict[int, int]:
        """Address -> register (or bit) of one table, with the values of this instant."""
        t = time.monotonic() - self.started
        out: dict[int, int] = {}
        for index, item in enumerate(self.register_map.fields):
            if item.kind != kind or not item.numeric:
                continue
            value = simulated_value(item, index, t)
            words = encode_value(
                _raw(item, value),
                item.dtype,
                self.register_map.order_of(item),
                length=item.length,
                bit=item.bit,
            )
            for offset, word in enumerate(words):
                out[item.address + offset] = word
        return out

    def _blocks(self, kind: RegisterKind) -> list[SimData]:
        addresses = sorted(self.words_now(kind))
        sim_type = SimType.BITS if kind.is_bit else SimType.REGISTERS
        if not addresses:
            return [SimData(0, values=0, datatype=sim_type)]
        if self.refuse_holes:
            return [SimData(a, values=0, datatype=sim_type) for a in addresses]
        span = addresses[-1] - addresses[0] + 1
        return [SimData(addresses[0], count=span, values=0, datatype=sim_type)]

    def device(self) -> SimDevice:
        """The pymodbus device serving this slave."""
        blocks = tuple(self._blocks(kind) for kind in _TABLES)
        return SimDevice(self.unit, simdata=blocks, action=self._action)  # type: ignore[arg-type]

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if self.mode is SlaveMode.DEAD:
            raise NoSuchIdException(f"unit {self.unit} is simulated dead")
        if self.mode is SlaveMode.SLOW:
            await asyncio.sleep(self.slow_s)
        self.requests += 1
        if self.mode is SlaveMode.EXCEPTION:
            return ExcCodes(self.exception_code)
        kind = _TABLE_OF_FUNCTION.get(function_code)
        if kind is not None and set_values is None:
            self._refresh(kind, start_address, registers)
        return None

    def _refresh(self, kind: RegisterKind, start_address: int, registers: list[int]) -> None:
        for address, word in self.words_now(kind).items():
            if kind.is_bit:
                index, bit = address // 16 - start_address, address % 16
                if 0 <= index < len(registers):
                    mask = 1 << bit
                    registers[index] = (registers[index] | mask) if word else (registers[index] & ~mask)
            elif 0 <= address - start_address < len(registers):
                registers[address - start_address] = word


class _Bus(SimCore):
    """pymodbus' device table, except that unknown unit ids stay silent as on a real bus."""

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if device_id not in self.devices:
            raise NoSuchIdException(f"no unit {device_id} on this bus")
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        if device_id not in self.devices:
            raise NoSuchIdException(f"no unit {device_id} on this bus")
        return await super().async_setValues(device_id, func_code, address, values)


class _Handler(ServerRequestHandler):
    """pymodbus' request handler, except that every request is answered on its own.

    pymodbus reads the unit id and transaction id of its answer from the *latest* request after
    awaiting the data store, so a slow slave's late answer went out under the unit id of whatever
    request came next. A real slave answers with its own address; so does this one.
    """

    def __init__(self, owner: ModbusBaseServer) -> None:
        super().__init__(owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect)  # type: ignore[no-untyped-call]
        self._tasks: set[asyncio.Task[None]] = set()

    def handle_later(self) -> None:
        pdu, addr = self.last_pdu, self.last_addr
        if pdu is None:
            return
        task = asyncio.ensure_future(self._answer(pdu, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, pdu: ModbusPDU, addr: tuple[str, int] | None) -> None:
        try:
            response = await pdu.datastore_update(self.server.context, pdu.dev_id)
        except NoSuchIdException:
            return  # an absent or dead slave stays silent, as on RS485
        except Exception:  # a broken simulator answers like a broken device
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        self.server_send(response, addr)  # type: ignore[no-untyped-call]


class _TcpServer(ModbusTcpServer):
    def callback_new_connection(self) -> _Handler:
        return _Handler(self)


class _SerialServer(ModbusSerialServer):
    def callback_new_connection(self) -> _Handler:
        return _Handler(self)


class ModbusSimulator:
    """A set of simulated slaves behind one TCP server or one RTU line."""

    def __init__(self, slaves: list[SimulatedSlave]) -> None:
        self.slaves = {s.unit: s for s in slaves}
        self._server: ModbusBaseServer | None = None
        self.line: PtyLine | None = None

    def slave(self, unit: int) -> SimulatedSlave:
        """The simulated slave with that unit id (to switch its mode)."""
        return self.slaves[unit]

    def _devices(self) -> list[SimDevice]:
        return [s.device() for s in self.slaves.values()]

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve over TCP; returns the port (a free one when `port` is 0)."""
        devices = self._devices()
        server = _TcpServer(devices, address=(host, port), ignore_missing_devices=True)
        server.context = _Bus(devices)
        await server.serve_forever(background=True)
        self._server = server
        sockets = getattr(server.transport, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def start_rtu(self, client_link: Path, baud: float | None = 9600) -> PtyLine:
        """Serve RTU on a pty line; the master opens `client_link`."""
        line = PtyLine(client_link, baud)
        line.start()
        devices = self._devices()
        server = _SerialServer(
            devices,
            port=line.server_port,
            baudrate=int(baud or 9600),
            ignore_missing_devices=True,
        )
        server.context = _Bus(devices)
        await server.serve_forever(background=True)
        self._server, self.line = server, line
        return line

    async def stop(self) -> None:
        """Stop serving and free the line."""
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
        if self.line is not None:
            self.line.close()
            self.line = None


def _parse_slave(text: str, profiles_dir: Path | None) -> SimulatedSlave:
    unit, profile, *rest = text.split(":")
    mode = SlaveMode(rest[0]) if rest else SlaveMode.NORMAL
    return SimulatedSlave(int(unit), load_profile(profile, profiles_dir), mode)


async def _serve(args: argparse.Namespace) -> None:
    slaves = [_parse_slave(s, args.profiles_dir) for s in args.slave]
    sim = ModbusSimulator(slaves)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        bound = await sim.start_tcp(host, int(port))
        print(json.dumps({"tcp": f"{host}:{bound}"}), flush=True)
    else:
        line = await sim.start_rtu(Path(args.rtu), args.baud)
        print(json.dumps({"rtu": line.client_port, "baud": args.baud}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    """Command line entry: serve simulated slaves until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", help="HOST:PORT to listen on (port 0: any free port)")
    where.add_argument("--rtu", help="symlink path the master opens")
    parser.add_argument("--baud", type=float, default=9600.0, help="simulated line speed")
    parser.add_argument("--profiles-dir", type=Path, default=None)
    parser.add_argument("--slave", action="append", required=True, help="UNIT:PROFILE[:MODE]")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
