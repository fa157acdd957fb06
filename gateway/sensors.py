"""Which driver family serves which configured sensor, and how each series is declared on the wire."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from drivers.base import Driver, DriverSpec
from gateway import wire
from gateway.buses import BUS_FAMILIES
from gateway.config import GatewayConfig

#: a bus family's driver builder (drivers/family.py)
Builder = Callable[[Sequence[DriverSpec[Any]]], list[Driver]]


def build_drivers(config: GatewayConfig) -> list[Driver]:
    """One driver per sensor or per shared bus, for every enabled sensor of the config."""
    state_dir = config.state_dir / "drivers"
    # families group their sensors themselves (one driver per shared bus or listen address), and two
    # families may share a builder (LoRaWAN devices and LoRa modems): each builder runs once, with all its sensors
    by_builder: dict[Builder, list[DriverSpec[Any]]] = {family.build: [] for family in BUS_FAMILIES}
    for sensor in config.sensors:
        if sensor.enabled:
            family = sensor.family
            spec = family.spec(sensor.id, sensor.section, sensor.stale_after_s, state_dir)
            by_builder.setdefault(family.build, []).append(spec)
    return [driver for build, specs in by_builder.items() if specs for driver in build(specs)]


class SeriesCatalog:
    """Declares each (sensor, quantity, unit) on the wire with the resolution configured for it."""

    def __init__(self, config: GatewayConfig) -> None:
        self._sensors = {sensor.id: sensor for sensor in config.sensors}

    def __call__(self, sensor: str, quantity: str, unit: str) -> wire.SeriesInfo:
        """The wire declaration of one series; unknown sensors (gateway health) are lossless at 1 ms."""
        configured = self._sensors.get(sensor)
        if configured is None:
            return wire.SeriesInfo(sensor, quantity, unit)
        return wire.SeriesInfo(
            sensor,
            quantity,
            unit,
            resolution=configured.resolution.get(quantity),
            time_resolution_ms=configured.time_resolution_ms,
        )


def sensor_ids(config: GatewayConfig) -> Sequence[str]:
    """The ids of the enabled sensors, in config order."""
    return [sensor.id for sensor in config.sensors if sensor.enabled]
