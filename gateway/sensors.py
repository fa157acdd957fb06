"""Which driver family serves which configured sensor, and how each series is declared on the wire."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import drivers.lora
import drivers.modbus
import drivers.serial
from drivers.base import Driver, DriverSpec
from gateway import wire
from gateway.config import GatewayConfig, LoraModemSensor, LorawanSensor, ModbusSensor, SerialSensor


def build_drivers(config: GatewayConfig) -> list[Driver]:
    """One driver per sensor or per shared bus, for every enabled sensor of the config."""
    state_dir = config.state_dir / "drivers"
    serial: list[DriverSpec[object]] = []
    modbus: list[DriverSpec[object]] = []
    lora: list[DriverSpec[object]] = []
    for sensor in config.sensors:
        if not sensor.enabled:
            continue
        if isinstance(sensor, SerialSensor):
            serial.append(_spec(sensor.id, sensor.serial, sensor.stale_after_s, state_dir))
        elif isinstance(sensor, ModbusSensor):
            modbus.append(_spec(sensor.id, sensor.modbus, sensor.stale_after_s, state_dir))
        elif isinstance(sensor, LorawanSensor):
            lora.append(_spec(sensor.id, sensor.lorawan, sensor.stale_after_s, state_dir))
        elif isinstance(sensor, LoraModemSensor):
            lora.append(_spec(sensor.id, sensor.lora_modem, sensor.stale_after_s, state_dir))
    built: list[Driver] = []
    # families group their sensors themselves (one driver per shared bus or listen address)
    if serial:
        built += drivers.serial.build_drivers(serial)  # type: ignore[arg-type]
    if modbus:
        built += drivers.modbus.build_drivers(modbus)  # type: ignore[arg-type]
    if lora:
        built += drivers.lora.build_drivers(lora)  # type: ignore[arg-type]
    return built


def _spec(sensor_id: str, section: object, stale_after_s: float, state_dir: Path) -> DriverSpec[object]:
    return DriverSpec(sensor_id=sensor_id, section=section, stale_after_s=stale_after_s, state_dir=state_dir)


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
