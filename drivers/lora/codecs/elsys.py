"""Elsys ERS family (ERS, ERS Lite, ERS CO2, ERS Sound, ...): type/value records, big-endian.

Layout from Elsys' "Elsys LoRa payload" document (generic payload v2.x): a type byte followed
by a value of a size fixed per type. Only the types below are known; any other type stops the
decoder with ProtocolError because the next record's position cannot be known.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.lora.codecs import Measurement
from kernel.errors import ProtocolError


def _u(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _s(data: bytes) -> int:
    return int.from_bytes(data, "big", signed=True)


Record = tuple[int, Callable[[bytes], list[Measurement]]]

_TYPES: dict[int, Record] = {
    0x01: (2, lambda v: [Measurement("temperature", _s(v) / 10, "°C")]),
    0x02: (1, lambda v: [Measurement("humidity", v[0], "%")]),
    0x03: (
        3,
        lambda v: [Measurement(f"acceleration_{a}", _s(v[i : i + 1]), "g/63") for i, a in enumerate("xyz")],
    ),
    0x04: (2, lambda v: [Measurement("light", _u(v), "lx")]),
    0x05: (1, lambda v: [Measurement("motion", v[0], "count")]),
    0x06: (2, lambda v: [Measurement("co2", _u(v), "ppm")]),
    0x07: (2, lambda v: [Measurement("battery_voltage", _u(v) / 1000, "V")]),
    0x08: (2, lambda v: [Measurement("analog1", _u(v) / 1000, "V")]),
    0x0A: (2, lambda v: [Measurement("pulse1", _u(v), "count")]),
    0x0B: (4, lambda v: [Measurement("pulse1_absolute", _u(v), "count")]),
    0x0C: (2, lambda v: [Measurement("external_temperature", _s(v) / 10, "°C")]),
    0x0D: (1, lambda v: [Measurement("digital_input", v[0], "")]),
    0x0E: (2, lambda v: [Measurement("distance", _u(v), "mm")]),
    0x0F: (1, lambda v: [Measurement("acceleration_motion", v[0], "count")]),
    0x10: (
        4,
        lambda v: [
            Measurement("ir_internal_temperature", _s(v[:2]) / 10, "°C"),
            Measurement("ir_external_temperature", _s(v[2:]) / 10, "°C"),
        ],
    ),
    0x11: (1, lambda v: [Measurement("occupancy", v[0], "")]),
    0x12: (1, lambda v: [Measurement("water_leak", v[0], "")]),
    0x14: (4, lambda v: [Measurement("pressure", _u(v) / 1000, "hPa")]),
    0x15: (2, lambda v: [Measurement("sound_peak", v[0], "dB"), Measurement("sound_average", v[1], "dB")]),
    0x16: (2, lambda v: [Measurement("pulse2", _u(v), "count")]),
    0x17: (4, lambda v: [Measurement("pulse2_absolute", _u(v), "count")]),
    0x18: (2, lambda v: [Measurement("analog2", _u(v) / 1000, "V")]),
    0x19: (2, lambda v: [Measurement("external_temperature2", _s(v) / 10, "°C")]),
    0x1A: (1, lambda v: [Measurement("digital_input2", v[0], "")]),
    0x1C: (2, lambda v: [Measurement("tvoc", _u(v), "ppb")]),
}


class ElsysCodec:
    """Decoder for Elsys ERS-family uplinks."""

    name = "elsys"

    def decode(self, fport: int | None, payload: bytes) -> list[Measurement]:
        """All records of the payload, in order."""
        out: list[Measurement] = []
        i = 0
        while i < len(payload):
            kind = payload[i]
            record = _TYPES.get(kind)
            if record is None:
                raise ProtocolError(f"Elsys: unknown record type {kind:#04x} at byte {i}")
            size, read = record
            value = payload[i + 1 : i + 1 + size]
            if len(value) != size:
                raise ProtocolError(f"Elsys: record {kind:#04x} truncated")
            out.extend(read(value))
            i += 1 + size
        return out
