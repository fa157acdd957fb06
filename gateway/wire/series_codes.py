"""Version-5 series rows: common quantity and unit names as small integers from a fixed registry.

A series row of version 4 spells out its quantity and unit ('air_pressure', 'hPa': 17 bytes of the
35 a one-series row takes); version 5 writes the index of the name in QUANTITIES or UNITS instead
(one CBOR byte for the first 24 of each), and any other name as text. The tables are part of the
format (docs/wire-format.md, section 3.6): entries are only ever appended, never reordered.

Both directions convert to and from the version-4 row, the one canonical form of a series table:
the catalogue id hashes it, so a version-4 and a version-5 declaration of the same table agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kernel.errors import MalformedBatch

#: quantity names by code: the quantities of the agent's drivers, the config/ examples and device
#: profiles, and the shared bench data (codes 0-23 take one CBOR byte, later ones two)
QUANTITIES: tuple[str, ...] = (
    "air_temperature", "relative_humidity", "dew_point", "air_pressure",
    "barometric_pressure", "wind_speed", "wind_direction", "pm2_5",
    "pm10", "pm1_0", "precipitation", "global_irradiance",
    "surface_temperature", "water_temperature", "water_level", "voltage",
    "current", "power", "energy", "frequency",
    "power_factor", "rssi", "snr", "battery_voltage",
    "soil_moisture", "soil_temperature", "illuminance", "noise_level",
    "co2", "no2", "o3", "wind_gust",
)  # fmt: skip
#: unit names by code: SenML's (RFC 8428 section 12.1 and RFC 8798's secondary units; the IANA
#: "SenML Units" registry) as the agent's sensors report them, plus "1" (dimensionless, as UCUM
#: writes it and the Modbus profiles use it) and "mg/m3" and "g/m3" (the bench data)
UNITS: tuple[str, ...] = (
    "Cel", "%RH", "hPa", "Pa", "kPa", "m/s", "deg", "ug/m3",
    "mg/m3", "g/m3", "mm", "W/m2", "m", "V", "A", "mA",
    "W", "Wh", "Hz", "%", "1", "dBm", "dB", "/",
    "VA", "var", "varh", "VAh", "Ah", "kWh", "K", "count",
    "ppm", "mm/h", "lx", "s", "ms", "km/h", "cm", "mV",
    "kW", "kvar", "kVA", "kVAh", "kvarh", "dBA", "mm/s", "lat", "lon",
)  # fmt: skip
#: a version-5 row leaves its time resolution out when it is this: what 1 Hz and per-minute street
#: sensors need (config/example.toml's weather station, every series of bench/), written out it
#: costs 3 bytes a row; a series left at the config default of 1 ms writes its 1 (one byte)
DEFAULT_TIME_RESOLUTION_MS = 1000

_QUANTITY_CODES = {name: code for code, name in enumerate(QUANTITIES)}
_UNIT_CODES = {name: code for code, name in enumerate(UNITS)}


def compact_row(row: Sequence[Any]) -> list[Any]:
    """The version-5 form of a version-4 row [sensor, quantity, unit, scale, time resolution]."""
    sensor, quantity, unit, scale, time_res = row
    out = [sensor, _QUANTITY_CODES.get(quantity, quantity), _UNIT_CODES.get(unit, unit), scale]
    if time_res != DEFAULT_TIME_RESOLUTION_MS:
        out.append(time_res)
    return out


def expanded_row(row: object) -> list[Any]:
    """The version-4 form of a version-5 row; MalformedBatch for a shape or code outside the format."""
    if not isinstance(row, list) or len(row) not in (4, 5):
        raise MalformedBatch("a version-5 series row must be [sensor, quantity, unit, scale, ? time_res]")
    sensor, quantity, unit, scale, *rest = row
    return [
        sensor,
        _name(quantity, QUANTITIES, "quantity"),
        _name(unit, UNITS, "unit"),
        scale,
        rest[0] if rest else DEFAULT_TIME_RESOLUTION_MS,
    ]


def _name(item: object, names: tuple[str, ...], what: str) -> object:
    """The registry name of a code; text passes as it is (the row check types it)."""
    if type(item) is not int:
        return item
    if not 0 <= item < len(names):
        raise MalformedBatch(f"{what} code {item} is not in the registry (0-{len(names) - 1})")
    return names[item]
