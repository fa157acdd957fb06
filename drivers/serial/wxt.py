"""Vaisala WXT5xx ASCII data messages, sans-I/O: `0R0,Dm=283D,Sm=1.0M,Ta=23.6C,...` with unit letters.

From the public WXT530 series user guide (M211840EN): a message is `<addr>R<n>` (n = 0 composite,
1 wind, 2 PTU, 3 precipitation, 5 supervisor) then `name=value<unit letter>` fields; `#` in place
of the unit marks an invalid value. When the poll was sent in lower case (`0r0`), three CRC
characters follow the data: CRC-16 (poly 0xA001 reflected, init 0) over the message from the
address, encoded as 0x40|crc>>12, 0x40|(crc>>6)&0x3F, 0x40|crc&0x3F. Pressure is given in Pa.
"""

from __future__ import annotations

import re

from drivers.serial.codec import ChecksumMismatch, LineCodec, Measurement, Sample, finite, scaled
from kernel.model import Quality


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Vaisala's CRC-16 of a message (from the address up to the CRC characters)."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def crc_chars(data: bytes) -> bytes:
    """The three printable CRC characters appended to `data`."""
    crc = crc16(data)
    return bytes([0x40 | crc >> 12, 0x40 | (crc >> 6) & 0x3F, 0x40 | crc & 0x3F])


#: unit letter -> (SenML unit, factor, offset) per family of parameters
_SPEED = {
    b"M": ("m/s", 1.0, 0.0),
    b"K": ("m/s", 1 / 3.6, 0.0),
    b"S": ("m/s", 0.44704, 0.0),
    b"N": ("m/s", 1852 / 3600, 0.0),
}
_TEMP = {b"C": ("Cel", 1.0, 0.0), b"F": ("Cel", 5 / 9, -32 * 5 / 9)}
_PRESSURE = {
    b"H": ("Pa", 100.0, 0.0),
    b"P": ("Pa", 1.0, 0.0),
    b"B": ("Pa", 100_000.0, 0.0),
    b"M": ("Pa", 133.322387415, 0.0),
    b"I": ("Pa", 3386.38866667, 0.0),
}
_DIRECTION = {b"D": ("deg", 1.0, 0.0)}
_HUMIDITY = {b"P": ("%RH", 1.0, 0.0)}
_AMOUNT = {b"M": ("mm", 1.0, 0.0), b"I": ("mm", 25.4, 0.0)}
_INTENSITY = {b"M": ("mm/h", 1.0, 0.0), b"I": ("mm/h", 25.4, 0.0)}
_DURATION = {b"s": ("s", 1.0, 0.0)}
_HITS = {b"M": ("1/cm2", 1.0, 0.0), b"I": ("1/cm2", 1 / 6.4516, 0.0), b"H": ("count", 1.0, 0.0)}
_HIT_RATE = {b"M": ("1/cm2/h", 1.0, 0.0), b"I": ("1/cm2/h", 1 / 6.4516, 0.0), b"H": ("1/h", 1.0, 0.0)}
#: the heating voltage's letter is a state (N off, V full, W half, F fail-safe), the value is volts
_VOLTS = {b"V": ("V", 1.0, 0.0), b"N": ("V", 1.0, 0.0), b"W": ("V", 1.0, 0.0), b"F": ("V", 1.0, 0.0)}

_PARAMETERS: dict[bytes, tuple[str, dict[bytes, tuple[str, float, float]]]] = {
    b"Dn": ("wind_direction_min", _DIRECTION),
    b"Dm": ("wind_direction", _DIRECTION),
    b"Dx": ("wind_direction_max", _DIRECTION),
    b"Sn": ("wind_speed_min", _SPEED),
    b"Sm": ("wind_speed", _SPEED),
    b"Sx": ("wind_speed_max", _SPEED),
    b"Ta": ("air_temperature", _TEMP),
    b"Tp": ("internal_temperature", _TEMP),
    b"Ua": ("relative_humidity", _HUMIDITY),
    b"Pa": ("barometric_pressure", _PRESSURE),
    b"Rc": ("rain_accumulation", _AMOUNT),
    b"Rd": ("rain_duration", _DURATION),
    b"Ri": ("rain_intensity", _INTENSITY),
    b"Rp": ("rain_peak_intensity", _INTENSITY),
    b"Hc": ("hail_accumulation", _HITS),
    b"Hd": ("hail_duration", _DURATION),
    b"Hi": ("hail_intensity", _HIT_RATE),
    b"Hp": ("hail_peak_intensity", _HIT_RATE),
    b"Th": ("heating_temperature", _TEMP),
    b"Vh": ("heating_voltage", _VOLTS),
    b"Vs": ("supply_voltage", _VOLTS),
    b"Vr": ("reference_voltage", _VOLTS),
}


class WxtCodec(LineCodec):
    """Decode WXT5xx data messages (any address, R0..R5, with or without CRC) into samples."""

    max_line = 512

    def _decode_line(self, line: bytes) -> None:
        start = _find_head(line)
        if start < 0:
            self._counters.garbage_bytes += self._raw_length
            return
        self._counters.garbage_bytes += start
        line = line[start:]
        if line[1:2] == b"r":
            data, given = line[:-3], line[-3:]
            if crc_chars(data) != given:
                self._emit_error(ChecksumMismatch(f"WXT CRC {given!r} != {crc_chars(data)!r}"))
                return
            line = data
        fields = line.split(b",")
        measurements = [m for m in map(_measurement, fields[1:]) if m is not None]
        self._counters.frames += 1
        self._events.append(Sample(f"R{line[2:3].decode()}", tuple(measurements)))


#: greedy: finds the *last* head, because a message cut by a hangup is followed by a whole one on
#: the same line. No field ends like a head (unit letters are never R or r).
_LAST_HEAD = re.compile(rb".*([0-9A-Za-z][Rr][0-9]),", re.DOTALL)


def _find_head(line: bytes) -> int:
    """Index of the last `<addr>R<n>,` message head in a line, or -1."""
    match = _LAST_HEAD.match(line)
    return match.start(1) if match else -1


def _measurement(field: bytes) -> Measurement | None:
    name, equals, text = field.partition(b"=")
    parameter = _PARAMETERS.get(name)
    if not equals or parameter is None or len(text) < 2:
        return None
    quantity, units = parameter
    letter = text[-1:]
    value = finite(text[:-1])
    if letter == b"#":
        unit, _factor, _offset = next(iter(units.values()))
        return Measurement(quantity, value, unit, Quality.INVALID)
    conversion = units.get(letter)
    if conversion is None:
        raise ValueError(f"unknown unit {letter!r} for {name!r}")
    unit, factor, offset = conversion
    if offset:
        return Measurement(quantity, finite(f"{value * factor + offset:.10g}"), unit)
    return Measurement(quantity, scaled(value, factor), unit)
