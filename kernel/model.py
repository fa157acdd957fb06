"""The domain model shared by drivers, buffer and uplink."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Quality(enum.IntFlag):
    """Quality flags carried with every reading (a bit set; 0 means a plain good reading)."""

    OK = 0
    #: the device marked the value invalid or out of range, the value is kept as reported
    INVALID = 1
    #: the gateway clock was not synchronised when the reading was taken
    CLOCK_UNSYNCED = 2
    #: the reading arrived after its window was closed for good (uploaded raw)
    LATE = 4
    #: the device answered with an exception or warning for this value
    DEVICE_WARNING = 8
    #: the value was clamped, saturated or otherwise estimated by the device
    ESTIMATED = 16
    #: outside the physical limits of its quantity (gateway/plausibility.py): kept, left out of windows
    OUT_OF_RANGE = 32


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value of one quantity of one sensor at one instant (int ms UTC)."""

    sensor: str
    quantity: str
    ts_ms: int
    value: float
    unit: str
    quality: Quality = Quality.OK


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """Something an operator should see next to the data: a stale sensor, a quarantined database..."""

    ts_ms: int
    source: str
    kind: str
    detail: str = ""
