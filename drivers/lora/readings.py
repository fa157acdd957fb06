"""From decoded LoRa measurements and RF metadata to the agent's `Reading`s."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from drivers.lora.codecs import Measurement
from kernel.model import Reading

#: numeric fields of a forwarder `stat` report worth keeping as gateway health readings
STAT_FIELDS = {
    "rxnb": "count",
    "rxok": "count",
    "rxfw": "count",
    "ackr": "%",
    "dwnb": "count",
    "txnb": "count",
    "temp": "°C",
}


def measurement_readings(sensor: str, ts_ms: int, measurements: Iterable[Measurement]) -> list[Reading]:
    """One reading per decoded measurement, all stamped with the reception time."""
    return [Reading(sensor, m.quantity, ts_ms, float(m.value), m.unit, m.quality) for m in measurements]


def signal_readings(sensor: str, ts_ms: int, rssi: float, snr: float | None) -> list[Reading]:
    """RSSI and SNR of the best copy: what a technician checks an antenna with."""
    out = [Reading(sensor, "rssi", ts_ms, float(rssi), "dBm")]
    if snr is not None:
        out.append(Reading(sensor, "snr", ts_ms, float(snr), "dB"))
    return out


def gateway_sensor_id(gateway_eui: int) -> str:
    """The sensor id health readings of a packet forwarder are filed under."""
    return f"lora-gw-{gateway_eui:016x}"


def stat_readings(gateway_eui: int, ts_ms: int, stat: Mapping[str, Any]) -> list[Reading]:
    """Gateway health readings from a forwarder's `stat` object (numeric fields only)."""
    sensor = gateway_sensor_id(gateway_eui)
    out = []
    for name, unit in STAT_FIELDS.items():
        value = stat.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out.append(Reading(sensor, f"forwarder_{name}", ts_ms, float(value), unit))
    return out
