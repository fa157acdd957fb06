"""SerialLine on a real pty: RS485 half-duplex settings reach the kernel call, failures are DeviceErrors."""

from __future__ import annotations

import os
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
import serial.serialposix

from drivers.serial.config import SerialSection
from drivers.serial.transport import SerialLine
from kernel.errors import DeviceError


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A pty pair: (master fd, a by-id style link to the slave)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "usb-FTDI_USB-RS485_Cable_FT4XY-if00-port0"
    link.symlink_to(os.ttyname(slave))
    os.close(slave)
    yield master, link
    os.close(master)


async def test_rs485_options_become_the_kernel_rs485_settings(
    pty: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[serial.rs485.RS485Settings] = []
    # a pty has no RS485 driver: record what would reach the TIOCSRS485 ioctl instead
    monkeypatch.setattr(serial.serialposix.Serial, "_set_rs485_mode", lambda _s, mode: applied.append(mode))
    rs485 = {"rts_level_for_tx": False, "delay_before_tx_s": 0.002, "delay_before_rx_s": 0.001}
    section = SerialSection(port=str(pty[1]), baud=19200, stopbits=2, rs485=rs485)
    line = await SerialLine.open(section)
    try:
        (mode,) = (m for m in applied if m is not None)
        assert (mode.rts_level_for_tx, mode.rts_level_for_rx) == (False, True)
        assert (mode.delay_before_tx, mode.delay_before_rx) == (0.002, 0.001)
        port = line._writer.transport.get_extra_info("serial")
        assert (port.baudrate, port.stopbits) == (19200, 2)
    finally:
        await line.close()


async def test_line_settings_the_device_rejects_are_a_device_error(pty: tuple[int, Path]) -> None:
    # a pty refuses even parity (termios.error, which is no OSError): a real UART may refuse a baud rate
    with pytest.raises(DeviceError, match="cannot open"):
        await SerialLine.open(SerialSection(port=str(pty[1]), parity="E"))


async def test_rs485_on_a_port_without_rs485_support_fails_and_releases_the_port(
    pty: tuple[int, Path],
) -> None:
    section = SerialSection(port=str(pty[1]), rs485={})
    with pytest.raises(DeviceError, match="cannot enable RS485 mode"):
        await SerialLine.open(section)
    # the exclusive lock was released: the next opener (the driver's retry, a probe) gets the port
    line = await SerialLine.open(SerialSection(port=str(pty[1])))
    await line.close()


async def test_bytes_flow_both_ways_and_a_hangup_is_a_device_error(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "ttyWX"
    link.symlink_to(os.ttyname(slave))
    os.close(slave)
    line = await SerialLine.open(SerialSection(port=str(link)))
    try:
        await line.write(b"0R0\r\n")
        assert os.read(master, 100) == b"0R0\r\n"
        os.write(master, b"$YXMTW,11.2,C*1F\r\n")
        assert await line.read() == b"$YXMTW,11.2,C*1F\r\n"
        os.close(master)  # the device side is gone: an unplug
        with pytest.raises(DeviceError, match="ttyWX"):
            await line.read()
        with pytest.raises(DeviceError, match="closed port"):  # a poller's next command
            await line.write(b"0R0\r\n")
    finally:
        await line.close()
