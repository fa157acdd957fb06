"""Port names: a numbered /dev/ttyUSBn gets a warning that names its stable /dev/serial/by-id link."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from drivers.base import DriverSpec
from drivers.serial import build_drivers
from drivers.serial.config import SerialSection
from drivers.serial.ports import by_id_names, unstable_name_advice


def udev(tmp_path: Path) -> tuple[Path, Path]:
    """A fake /dev with ttyUSB1 and its by-id link, as udev makes them."""
    device = tmp_path / "ttyUSB1"
    device.touch()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-FTDI_FT232R_USB_UART_A10K5Q2B-if00-port0").symlink_to(device)
    (by_id / "usb-1a86_USB2.0-Serial-if00-port0").symlink_to(tmp_path / "ttyUSB0")
    return device, by_id


def test_a_numbered_port_is_told_its_by_id_name(tmp_path: Path) -> None:
    device, by_id = udev(tmp_path)
    link = str(by_id / "usb-FTDI_FT232R_USB_UART_A10K5Q2B-if00-port0")
    assert by_id_names(str(device), by_id) == [link]
    advice = unstable_name_advice(str(device), by_id)
    assert advice is not None and f"use {link}" in advice


def test_an_unplugged_numbered_port_is_told_where_to_look(tmp_path: Path) -> None:
    _device, by_id = udev(tmp_path)
    advice = unstable_name_advice(str(tmp_path / "ttyACM3"), by_id)
    assert advice is not None and f"ls -l {by_id}" in advice


def test_stable_names_get_no_advice(tmp_path: Path) -> None:
    _device, by_id = udev(tmp_path)
    for port in (str(by_id / "usb-FTDI_FT232R_USB_UART_A10K5Q2B-if00-port0"), "/dev/ttyAMA0", "/dev/ttyS0"):
        assert unstable_name_advice(port, by_id) is None


def test_the_agent_warns_about_a_numbered_port_at_start() -> None:
    specs = [
        DriverSpec("dust-1", SerialSection(port="/dev/ttyUSB7", protocol="sds011")),
        DriverSpec("wx-1", SerialSection(port="/dev/serial/by-id/usb-FTDI_X-if00-port0")),
    ]
    with capture_logs() as logs:
        build_drivers(specs)
    warnings = [entry for entry in logs if entry["event"] == "unstable serial port name"]
    assert [(w["log_level"], w["sensor"]) for w in warnings] == [("warning", "dust-1")]
    assert "/dev/ttyUSB7 may name another device" in warnings[0]["advice"]
