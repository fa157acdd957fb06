"""Command schedules for sensors that must be told what to do: query mode and duty cycling.

The laser and fan of SDS011/PMS sensors wear out when always on (about 8000 h), so a duty cycle
wakes the sensor, lets it warm up, asks for one reading, and puts it back to sleep. The codec
decodes whatever the sensor answers; a poller only writes, with the pauses the device needs
between commands.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from drivers.serial import pms5003, sds011
from drivers.serial.driver import Line

#: pause between two commands: the SDS011 drops a command sent while it answers the last one
COMMAND_GAP_S = 0.2


@dataclass(frozen=True, slots=True)
class CommandSet:
    """The bytes a sensor family understands; None where it has no such command."""

    query: bytes
    query_mode: bytes | None = None
    active_mode: bytes | None = None
    wake: bytes | None = None
    sleep: bytes | None = None


SDS011 = CommandSet(
    query=sds011.query_data(),
    query_mode=sds011.set_query_mode(True),
    active_mode=sds011.set_query_mode(False),
    wake=sds011.set_sleep(False),
    sleep=sds011.set_sleep(True),
)
PMS5003 = CommandSet(
    query=pms5003.read_passive(),
    query_mode=pms5003.set_passive_mode(True),
    active_mode=pms5003.set_passive_mode(False),
    wake=pms5003.set_sleep(False),
    sleep=pms5003.set_sleep(True),
)


def wxt_poll(address: str = "0", crc: bool = False) -> CommandSet:
    """Polling a WXT5xx for its composite message (`0R0`; `0r0` asks for the CRC variant)."""
    return CommandSet(query=f"{address}{'r' if crc else 'R'}0\r\n".encode("ascii"))


async def _send(line: Line, command: bytes | None) -> None:
    if command is not None:
        await line.write(command)
        await asyncio.sleep(COMMAND_GAP_S)


@dataclass
class ActiveSetup:
    """Active (streaming) mode: wake the sensor and set active reporting once per port opening."""

    commands: CommandSet

    async def drive(self, line: Line) -> None:
        """Send the set-up commands, then stay out of the way."""
        await _send(line, self.commands.wake)
        await _send(line, self.commands.active_mode)
        await asyncio.Event().wait()


@dataclass
class QueryPoller:
    """Query mode: ask for a reading every `interval_s`, the sensor staying awake."""

    commands: CommandSet
    interval_s: float

    async def drive(self, line: Line) -> None:
        """Set query mode, then poll on a fixed schedule (no drift from command pauses)."""
        await _send(line, self.commands.wake)
        await _send(line, self.commands.query_mode)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await line.write(self.commands.query)
            next_at = max(next_at + self.interval_s, loop.time())
            await asyncio.sleep(next_at - loop.time())


@dataclass
class DutyCycle:
    """Every `interval_s`: wake, warm up `warmup_s`, query, wait `read_s`, sleep until the next cycle."""

    commands: CommandSet
    interval_s: float
    warmup_s: float
    read_s: float = 1.0

    async def drive(self, line: Line) -> None:
        """Run wake/warm-up/query/sleep cycles (query mode, so warm-up readings never reach us)."""
        loop = asyncio.get_running_loop()
        await _send(line, self.commands.wake)
        await _send(line, self.commands.query_mode)
        while True:
            started = loop.time()
            await _send(line, self.commands.wake)
            await asyncio.sleep(self.warmup_s)
            await line.write(self.commands.query)
            await asyncio.sleep(self.read_s)
            await _send(line, self.commands.sleep)
            await asyncio.sleep(max(0.0, started + self.interval_s - loop.time()))
