"""Physical plausibility limits per quantity: a value outside them is kept, flagged OUT_OF_RANGE and counted.

A checksum only proves that a frame arrived as the device sent it, not that the device measured
something possible: a sensor with a failing ADC or a firmware bug sends a perfectly framed 1e300 °C
(issue 13). Such a value is never dropped (the backend should see that the device misbehaves) and
never passes for a clean reading: it is stored with `Quality.OUT_OF_RANGE`, left out of windows
like a device-invalid value, and counted per sensor for `gateway status` and the metrics.

The defaults are deliberately wide (what the physics or the definition allows on a street in
Rostock, not what the weather usually does); a sensor's `limits` in the configuration replaces the
default of a quantity or adds one for a quantity the table does not know.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from kernel.model import Quality, Reading

_CELSIUS = frozenset({"Cel", "°C", "C"})
_PERCENT_RH = frozenset({"%RH", "%"})
_PM = frozenset({"ug/m3", "µg/m³", "ug/m^3"})


@dataclass(frozen=True)
class Limit:
    """Inclusive physical range of one quantity in the units it is emitted in."""

    low: float
    high: float
    units: frozenset[str] = frozenset()  # empty: whatever the unit (a configured limit)

    def admits(self, value: float) -> bool:
        """Whether `value` is possible; NaN is a missing value, not an implausible one."""
        return math.isnan(value) or self.low <= value <= self.high


#: quantity -> limit, for every quantity with a physical range that the drivers emit. Sources:
#: air temperature: the records are -89.2 °C (Vostok, 1983) and 56.7 °C (Death Valley, 1913) (WMO
#: Archive of Weather and Climate Extremes); humidity: 0-100 % by definition; station pressure: the
#: sea-level records are 870 hPa (Typhoon Tip, 1979) and 1083.8 hPa (Agata, 1968) (WMO), the low
#: end widened for gateways up to ~5 km; wind: the record gust is 113 m/s (Barrow Island, 1996,
#: WMO); rain: the 1-minute record is 31.2 mm (Unionville, 1956), 1872 mm/h; PM: SDS011 and
#: PMS5003 datasheets give 0-999.9 and 0-1000 µg/m³, 2000 leaves room for other optical counters;
#: sound: 194 dB is the loudest undistorted sound at 1 atm; light: direct sunlight is about 120 klx;
#: CO2: NDIR sensors (SCD30) measure up to 40,000 ppm.
DEFAULT_LIMITS: Mapping[str, Limit] = {
    **dict.fromkeys(
        ("air_temperature", "temperature", "external_temperature", "dew_point", "ir_external_temperature"),
        Limit(-80.0, 70.0, _CELSIUS),
    ),
    **dict.fromkeys(
        ("internal_temperature", "ir_internal_temperature", "heating_temperature"),
        Limit(-80.0, 120.0, _CELSIUS),  # inside a housing in the sun, or a heated sensor head
    ),
    "water_temperature": Limit(-5.0, 45.0, _CELSIUS),
    **dict.fromkeys(("relative_humidity", "humidity", "battery"), Limit(0.0, 100.0, _PERCENT_RH)),
    "barometric_pressure": Limit(50_000.0, 110_000.0, frozenset({"Pa"})),
    "pressure": Limit(500.0, 1100.0, frozenset({"hPa"})),
    **dict.fromkeys(
        ("wind_speed", "wind_speed_min", "wind_speed_max"), Limit(0.0, 120.0, frozenset({"m/s"}))
    ),
    **dict.fromkeys(
        ("wind_direction", "wind_direction_min", "wind_direction_max"), Limit(0.0, 360.0, frozenset({"deg"}))
    ),
    **dict.fromkeys(("rain_intensity", "rain_peak_intensity"), Limit(0.0, 2000.0, frozenset({"mm/h"}))),
    **dict.fromkeys(("pm1", "pm2_5", "pm4", "pm10"), Limit(0.0, 2000.0, _PM)),
    **dict.fromkeys(("sound_peak", "sound_average"), Limit(0.0, 194.0, frozenset({"dB"}))),
    "light": Limit(0.0, 200_000.0, frozenset({"lx"})),
    "co2": Limit(0.0, 40_000.0, frozenset({"ppm"})),
}

#: no quantity any driver emits comes near this: beyond it a value is garbage whatever the quantity
ABSURD = 1e15


class Plausibility:
    """Flags readings outside their limits and counts them per sensor."""

    def __init__(self, configured: Mapping[str, Mapping[str, tuple[float, float]]] | None = None) -> None:
        #: sensor id -> quantity -> the limit that replaces the default
        self._configured = {
            sensor: {q: Limit(low, high) for q, (low, high) in limits.items()}
            for sensor, limits in (configured or {}).items()
        }
        self.out_of_range: Counter[str] = Counter()

    def check(self, reading: Reading) -> Reading:
        """The reading itself, or a copy flagged OUT_OF_RANGE (the value kept) when it is implausible."""
        if self.admits(reading):
            return reading
        self.out_of_range[reading.sensor] += 1
        r = reading
        return Reading(r.sensor, r.quantity, r.ts_ms, r.value, r.unit, r.quality | Quality.OUT_OF_RANGE)

    def admits(self, reading: Reading) -> bool:
        """Whether the value is possible for its quantity (a quantity without limits: not absurd)."""
        try:
            value = float(reading.value)
        except (TypeError, ValueError):
            return True  # not a number at all: the store drops what it cannot pack, and says so
        except OverflowError:
            return False  # an int beyond any float
        if math.isinf(value) or abs(value) > ABSURD:
            return False
        limit = self._configured.get(reading.sensor, {}).get(reading.quantity)
        if limit is None:
            limit = DEFAULT_LIMITS.get(reading.quantity)
            if limit is None or reading.unit not in limit.units:
                return True  # another unit than the table's: no default applies
        return limit.admits(value)
