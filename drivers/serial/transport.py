"""The thin async glue around one open serial port (pyserial-asyncio-fast).

Every failure of the port (missing device, permission, EIO, hangup, EOF) leaves this module as a
`DeviceError`; reopening is the driver's job (see `drivers.serial.driver`).
"""

from __future__ import annotations

import asyncio
import contextlib
import termios
from typing import Any

import serial
import serial.rs485
import serial_asyncio_fast

from drivers.serial.config import Rs485Options, SerialSection
from kernel.errors import DeviceError

#: largest chunk taken from the stream at once; a 115200-baud line delivers ~11 kB/s
READ_CHUNK = 4096


class SerialLine:
    """One open serial port: `read()` chunks as they arrive, `write()` commands to the device."""

    def __init__(self, port: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.port = port
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, section: SerialSection) -> SerialLine:
        """Open the port as configured (exclusive lock: a second opener fails instead of stealing bytes)."""
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=section.port,
                baudrate=section.baud,
                bytesize=section.bytesize,
                parity=section.parity,
                stopbits=section.stopbits,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            # termios.error (not an OSError): the device rejected the line settings
            raise DeviceError(f"{section.port}: cannot open: {exc}") from None
        line = cls(section.port, reader, writer)
        if section.rs485 is not None:
            try:
                line._enable_rs485(section.rs485)
            except DeviceError:
                await line.close()  # release the exclusive lock before the driver retries
                raise
        return line

    def _enable_rs485(self, options: Rs485Options) -> None:
        """Let the kernel drive RTS as the transmit enable of a half-duplex RS485 transceiver."""
        port: Any = self._writer.transport.get_extra_info("serial")
        try:
            port.rs485_mode = serial.rs485.RS485Settings(
                rts_level_for_tx=options.rts_level_for_tx,
                rts_level_for_rx=not options.rts_level_for_tx,
                delay_before_tx=options.delay_before_tx_s,
                delay_before_rx=options.delay_before_rx_s,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(
                f"{self.port}: cannot enable RS485 mode (does this UART support TIOCSRS485?): {exc}"
            ) from None

    async def read(self) -> bytes:
        """Return the next chunk of bytes; DeviceError when the port vanished or hung up."""
        try:
            data = await self._reader.read(READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"{self.port}: read failed: {exc}") from None
        if not data:
            raise DeviceError(f"{self.port}: port closed")
        return data

    async def write(self, data: bytes) -> None:
        """Write a command and wait until it left the process (not necessarily the wire)."""
        if self._writer.transport.is_closing():
            raise DeviceError(f"{self.port}: write on a closed port")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (serial.SerialException, OSError, ConnectionError) as exc:
            raise DeviceError(f"{self.port}: write failed: {exc}") from None

    async def close(self) -> None:
        """Close the port; errors while closing a port that is already gone are irrelevant."""
        self._writer.close()
        with contextlib.suppress(serial.SerialException, OSError, ConnectionError):
            await self._writer.wait_closed()
