"""Modbus RTU (RS485) and TCP sensors: one scheduler per bus, profiles as register maps.

See docs/modbus.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drivers.base import Driver, DriverSpec
from drivers.family import BusFamily
from drivers.modbus.breaker import SlaveBreaker
from drivers.modbus.bus import BusTiming, ModbusBus
from drivers.modbus.config import ModbusSection
from drivers.modbus.link import Endpoint, ModbusLink, SerialLine, TcpEndpoint
from drivers.modbus.profile import RegisterMap, load_profile
from drivers.modbus.slave import Slave, select_fields
from kernel.backoff import Backoff
from kernel.errors import ConfigError

#: the Modbus over serial line spec (V1.02, 2.5.1.1): 3.5 character times between frames,
#: fixed at 1.75 ms above 19,200 baud
_MIN_FRAME_GAP_S = 0.00175


def endpoint_of(section: ModbusSection) -> Endpoint:
    """The serial line or TCP endpoint a section names."""
    if section.port is not None:
        return SerialLine(section.port, section.baud, section.bytesize, section.parity, section.stopbits)
    assert section.host is not None
    return TcpEndpoint(section.host, section.tcp_port)


def _slave(spec: DriverSpec[ModbusSection], profiles: dict[tuple[Path | None, str], RegisterMap]) -> Slave:
    section = spec.section
    key = (section.profiles_dir, section.profile)
    if key not in profiles:
        profiles[key] = load_profile(section.profile, section.profiles_dir)
    register_map = profiles[key]
    limits = register_map.limits(max_gap=section.max_gap, forbidden=section.forbidden)
    try:
        slave = Slave.planned(
            spec.sensor_id,
            section.unit,
            register_map,
            select_fields(register_map, section.fields),
            limits,
            interval_s=section.poll_interval_s,
            timeout_s=section.timeout_s,
            retries=section.retries,
        )
    except ConfigError as exc:
        raise ConfigError(f"sensor {spec.sensor_id!r}: {exc}") from None
    slave.stale_after_s = spec.stale_after_s
    slave.breaker = SlaveBreaker(
        dead_after=section.dead_after,
        probe=Backoff(initial_s=section.dead_retry_s, cap_s=section.dead_retry_max_s),
    )
    return slave


def _timing(sections: Sequence[ModbusSection], endpoint: Endpoint) -> BusTiming:
    frame_gap = 0.0
    if isinstance(endpoint, SerialLine):
        frame_gap = max(3.5 * endpoint.char_s, _MIN_FRAME_GAP_S)
    gaps = [s.request_gap_s for s in sections if s.request_gap_s is not None]
    return BusTiming(
        connect_gap_s=max(s.connect_gap_s for s in sections),
        request_gap_s=max([frame_gap, *gaps]),
        settle_after_timeout=isinstance(endpoint, SerialLine),
    )


def _check_bus(bus: str, specs: Sequence[DriverSpec[ModbusSection]]) -> Endpoint:
    endpoints = {endpoint_of(s.section) for s in specs}
    if len(endpoints) > 1:
        raise ConfigError(f"{bus}: sensors on one bus disagree on its settings: {endpoints}")
    units = [s.section.unit for s in specs]
    doubled = sorted({u for u in units if units.count(u) > 1})
    if doubled:
        raise ConfigError(f"{bus}: unit id(s) {doubled} used by more than one sensor")
    return endpoints.pop()


def build_drivers(specs: Sequence[DriverSpec[ModbusSection]]) -> list[Driver]:
    """One `ModbusBus` driver per bus (serial port or TCP host:port) with its sensors as slaves."""
    by_bus: dict[str, list[DriverSpec[ModbusSection]]] = {}
    for spec in specs:
        by_bus.setdefault(spec.section.bus_key, []).append(spec)
    profiles: dict[tuple[Path | None, str], RegisterMap] = {}
    drivers: list[Driver] = []
    for bus_key, members in by_bus.items():
        name = f"modbus:{bus_key}"
        endpoint = _check_bus(name, members)
        slaves = [_slave(spec, profiles) for spec in members]
        timing = _timing([m.section for m in members], endpoint)
        drivers.append(ModbusBus(name, ModbusLink(endpoint), slaves, timing))
    return drivers


#: this package's one bus family (drivers/family.py): profiles_dir names a folder
FAMILIES = (
    BusFamily(
        "modbus",
        ModbusSection,
        build_drivers,
        "A slave on a Modbus RTU (RS485) bus or behind a Modbus TCP server.",
        file_fields=("profiles_dir",),
    ),
)

__all__ = ["FAMILIES", "ModbusBus", "ModbusSection", "build_drivers", "endpoint_of"]
