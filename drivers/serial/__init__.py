"""Serial line sensors: pyserial-asyncio-fast transports over sans-I/O codecs (see docs/serial.md)."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from drivers.base import Driver, DriverSpec
from drivers.family import BusFamily
from drivers.serial import polling
from drivers.serial.codec import Codec
from drivers.serial.config import SerialSection
from drivers.serial.driver import Poller, SerialDriver
from drivers.serial.line_parser import LineField, LineParserCodec
from drivers.serial.nmea import NmeaCodec
from drivers.serial.pms5003 import Pms5003Codec
from drivers.serial.ports import unstable_name_advice
from drivers.serial.sds011 import Sds011Codec
from drivers.serial.wxt import WxtCodec

PROTOCOLS = ("nmea", "sds011", "pms5003", "wxt", "regex")

log = structlog.get_logger(__name__)


def codec_for(section: SerialSection) -> Codec:
    """A fresh codec for the section's protocol."""
    match section.protocol:
        case "nmea":
            return NmeaCodec(xdr_names=section.xdr_names)
        case "sds011":
            return Sds011Codec()
        case "pms5003":
            return Pms5003Codec()
        case "wxt":
            return WxtCodec()
        case "regex":
            assert section.regex is not None  # the config validator guarantees it
            fields = {
                name: LineField(f.quantity, f.unit, f.scale, f.offset)
                for name, f in section.regex.fields.items()
            }
            return LineParserCodec(section.regex.pattern, fields)


def poller_for(section: SerialSection) -> Poller | None:
    """The command schedule a sensor needs (None for sensors that just talk)."""
    options = section.polling
    if section.protocol == "wxt":
        commands = polling.wxt_poll(section.wxt_address, section.wxt_crc)
    elif section.protocol == "sds011":
        commands = polling.SDS011
    elif section.protocol == "pms5003":
        commands = polling.PMS5003
    else:
        return None
    if options.warmup_s is not None:
        return polling.DutyCycle(commands, options.interval_s, options.warmup_s, options.read_s)
    if options.mode == "query":
        return polling.QueryPoller(commands, options.interval_s)
    if options.setup and commands.active_mode is not None:
        return polling.ActiveSetup(commands)
    return None


def build_drivers(specs: Sequence[DriverSpec[SerialSection]]) -> list[Driver]:
    """One driver per configured serial sensor (each owns its port)."""
    for spec in specs:
        if advice := unstable_name_advice(spec.section.port):
            log.warning("unstable serial port name", sensor=spec.sensor_id, advice=advice)
        polling_options = spec.section.polling
        polled = polling_options.mode == "query" or polling_options.warmup_s is not None
        if polled and spec.stale_after_s <= polling_options.interval_s:
            log.warning(
                "stale_after_s is not longer than the polling interval: the sensor will flap stale",
                sensor=spec.sensor_id,
                stale_after_s=spec.stale_after_s,
                interval_s=polling_options.interval_s,
            )
    return [SerialDriver(spec, codec_for(spec.section), poller=poller_for(spec.section)) for spec in specs]


#: this package's one bus family (drivers/family.py)
FAMILIES = (
    BusFamily("serial", SerialSection, build_drivers, "A sensor on a serial line (RS232/RS485/USB)."),
)

__all__ = ["FAMILIES", "PROTOCOLS", "SerialDriver", "build_drivers", "codec_for", "poller_for"]
