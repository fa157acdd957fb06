"""NMEA 0183 weather sentences, sans-I/O: $--MDA, $--XDR (any transducer), $--MWV, $--MTW.

Sentence layouts follow NMEA 0183 v4.10 as documented publicly (gpsd's "NMEA Revealed",
www/NMEA.txt). Talker-agnostic: `$WIMDA` and `$YXMDA` are the same sentence. Every sentence must
carry its `*hh` checksum (XOR of the bytes between `$`/`!` and `*`). Pressure is reported in Pa
(the SenML primary unit, RFC 8428).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from drivers.serial.codec import (
    ChecksumMismatch,
    LineCodec,
    MalformedFrame,
    Measurement,
    Sample,
    finite,
    scaled,
)
from kernel.model import Quality

_HEX = {f"{i:02X}".encode(): i for i in range(256)} | {f"{i:02x}".encode(): i for i in range(256)}

#: wind speed unit letter -> factor to m/s (K km/h, M m/s, N knots, S statute mph)
_SPEED_TO_MS = {b"K": 1 / 3.6, b"M": 1.0, b"N": 1852 / 3600, b"S": 0.44704}
_INHG_TO_PA = 3386.38866667

#: XDR transducer type -> the quantity it measures unless configured otherwise
_XDR_QUANTITY = {
    b"A": "angle",
    b"C": "air_temperature",
    b"D": "displacement",
    b"F": "frequency",
    b"G": "generic",
    b"H": "relative_humidity",
    b"I": "current",
    b"N": "force",
    b"P": "barometric_pressure",
    b"R": "flow_rate",
    b"S": "switch_state",
    b"T": "rotational_speed",
    b"U": "voltage",
    b"V": "volume",
}
#: (type, unit letter) -> (SenML unit, factor)
_XDR_UNIT = {
    (b"A", b"D"): ("deg", 1.0),
    (b"C", b"C"): ("Cel", 1.0),
    (b"D", b"M"): ("m", 1.0),
    (b"F", b"H"): ("Hz", 1.0),
    (b"G", b""): ("/", 1.0),
    (b"H", b"P"): ("%RH", 1.0),
    (b"I", b"A"): ("A", 1.0),
    (b"N", b"N"): ("N", 1.0),
    (b"P", b"B"): ("Pa", 100_000.0),
    (b"P", b"P"): ("Pa", 1.0),
    (b"R", b"L"): ("l/s", 1.0),
    (b"S", b""): ("/", 1.0),
    (b"T", b"R"): ("1/min", 1.0),
    (b"U", b"V"): ("V", 1.0),
    (b"V", b"M"): ("m3", 1.0),
}


def checksum(body: bytes) -> int:
    """XOR of all bytes (folded as one big integer: ~5x faster than a Python loop)."""
    value = int.from_bytes(body, "little")
    width = len(body)
    while width > 1:
        half = (width + 1) // 2
        value = (value & ((1 << (half * 8)) - 1)) ^ (value >> (half * 8))
        width = half
    return value


def sentence(body: str) -> bytes:
    """Frame a sentence body (`WIMDA,...`, without `$`) with checksum and CRLF (for simulators)."""
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + f"{checksum(raw):02X}".encode() + b"\r\n"


def _field(fields: list[bytes], index: int) -> bytes:
    return fields[index] if index < len(fields) else b""


class NmeaCodec(LineCodec):
    """Decode NMEA 0183 weather sentences into `Sample`s; other sentence types are counted as ignored.

    `xdr_names` maps an XDR transducer name (`"TEMP2"`) or `"type:name"` (`"C:TEMP2"`) to a
    quantity, for stations with several transducers of one type.
    """

    max_line = 256

    def __init__(self, xdr_names: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._xdr_names = dict(xdr_names or {})
        self._decoders: dict[bytes, Callable[[list[bytes]], tuple[Measurement, ...]]] = {
            b"MDA": _mda,
            b"XDR": self._xdr,
            b"MWV": _mwv,
            b"MTW": _mtw,
        }

    def _decode_line(self, line: bytes) -> None:
        start = max(line.rfind(b"$"), line.rfind(b"!"))
        if start < 0:
            self._counters.garbage_bytes += self._raw_length
            return
        self._counters.garbage_bytes += start
        star = line.rfind(b"*")
        if star < start or star != len(line) - 3:
            self._emit_error(MalformedFrame(f"no *hh checksum: {line[start : start + 80]!r}"))
            return
        body = line[start + 1 : star]
        given = _HEX.get(line[star + 1 :])
        if given is None:
            self._emit_error(MalformedFrame(f"checksum is not hex: {line[star:]!r}"))
            return
        if checksum(body) != given:
            self._emit_error(ChecksumMismatch(f"checksum {given:02X} != {checksum(body):02X}"))
            return
        fields = body.split(b",")
        address = fields[0]
        decoder = self._decoders.get(address[2:]) if len(address) == 5 else None
        if decoder is None:
            self._counters.ignored += 1
            return
        measurements = decoder(fields)
        self._counters.frames += 1
        self._events.append(Sample(address[2:].decode(), measurements))

    def _xdr(self, fields: list[bytes]) -> tuple[Measurement, ...]:
        if (len(fields) - 1) % 4:
            raise ValueError(f"XDR needs groups of 4 fields, got {len(fields) - 1}")
        out = []
        for i in range(1, len(fields), 4):
            kind, value, unit, name = fields[i : i + 4]
            if not value:
                continue
            out.append(self._transducer(kind, finite(value), unit, name.decode("ascii")))
        return tuple(out)

    def _transducer(self, kind: bytes, value: float, unit: bytes, name: str) -> Measurement:
        type_name = kind.decode("ascii")
        quantity = self._xdr_names.get(f"{type_name}:{name}") or self._xdr_names.get(name)
        if quantity is None:
            quantity = _XDR_QUANTITY.get(kind) or f"xdr_{type_name.lower()}"
            if not quantity.isidentifier():
                raise ValueError(f"transducer type {kind!r} is not a letter")
        senml, factor = _XDR_UNIT.get((kind, unit), (unit.decode("ascii"), 1.0))
        return Measurement(quantity, scaled(value, factor), senml)


def _mda(fields: list[bytes]) -> tuple[Measurement, ...]:
    out = []
    if bars := _field(fields, 3):
        out.append(Measurement("barometric_pressure", scaled(finite(bars), 100_000.0), "Pa"))
    elif inches := _field(fields, 1):
        out.append(Measurement("barometric_pressure", scaled(finite(inches), _INHG_TO_PA), "Pa"))
    for index, quantity, unit in (
        (5, "air_temperature", "Cel"),
        (7, "water_temperature", "Cel"),
        (9, "relative_humidity", "%RH"),
        (11, "dew_point", "Cel"),
        (13, "wind_direction", "deg"),
    ):
        if text := _field(fields, index):
            out.append(Measurement(quantity, finite(text), unit))
    if speed := _field(fields, 19):
        out.append(Measurement("wind_speed", finite(speed), "m/s"))
    elif knots := _field(fields, 17):
        out.append(Measurement("wind_speed", scaled(finite(knots), _SPEED_TO_MS[b"N"]), "m/s"))
    return tuple(out)


def _mwv(fields: list[bytes]) -> tuple[Measurement, ...]:
    if len(fields) < 6:
        raise ValueError(f"MWV needs 5 fields, got {len(fields) - 1}")
    quality = Quality.OK if fields[5] == b"A" else Quality.INVALID
    out = []
    if fields[1]:
        out.append(Measurement("wind_direction", finite(fields[1]), "deg", quality))
    if fields[3]:
        factor = _SPEED_TO_MS.get(fields[4])
        if factor is None:
            raise ValueError(f"unknown wind speed unit {fields[4]!r}")
        out.append(Measurement("wind_speed", scaled(finite(fields[3]), factor), "m/s", quality))
    return tuple(out)


def _mtw(fields: list[bytes]) -> tuple[Measurement, ...]:
    if len(fields) < 3 or fields[2] != b"C":
        raise ValueError("MTW needs a temperature in C")
    if not fields[1]:
        return ()
    return (Measurement("water_temperature", finite(fields[1]), "Cel"),)


__all__ = ["MalformedFrame", "NmeaCodec", "checksum", "sentence"]
