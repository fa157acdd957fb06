"""`gateway config check`: everything that would break or quietly degrade a run, in one pass.

The agent's own loading (gateway.config.load_config) stops at the first layer that fails: a bad
sensor hides the duplicate id behind it, a bad id hides the unknown profile. Here every sensor is
validated on its own and named by its id, and what only the run would find is checked too: the key
file (missing, unreadable, readable by others), the state directory (creatable, writable), ports
and Modbus unit addresses claimed twice, quantity names the sensor's protocol never emits, profiles
that do not exist (with the list of those that do).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from drivers.lora.config import LorawanSection, ModemSection
from drivers.modbus.config import ModbusSection
from drivers.serial.config import SerialSection
from gateway import quantities, signing_key
from gateway.config import (
    DRIVER_TAGS,
    BusSensor,
    GatewayConfig,
    Sensor,
    describe_errors,
    parse_config,
)
from kernel.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file: where (a key path, or `sensor 'id'`) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


_SENSOR = TypeAdapter(Sensor)


def check_file(path: Path) -> tuple[GatewayConfig | None, list[Problem]]:
    """The configuration (None when it does not validate) and every problem found in it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return None, [Problem(str(path), f"cannot read: {exc.strerror or exc}")]
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(str(path), f"not valid TOML: {exc}")]
    raw_sensors = data.get("sensors", [])
    raw_sensors = raw_sensors if isinstance(raw_sensors, list) else []
    base_dir = path.parent.resolve()
    top, problems = _top_level(data, base_dir)
    valid: list[tuple[Any, BusSensor]] = []
    for index, raw in enumerate(raw_sensors):
        sensor, found = _sensor(index, raw)
        problems += found
        if sensor is not None:
            valid.append((raw, sensor))
    problems += _claimed_twice(raw_sensors, [sensor for _raw, sensor in valid])
    if top is not None:
        problems += _files(top)
        problems += _drivers(data, [raw for raw, _sensor in valid], base_dir)
    config = None
    if not problems:
        try:
            config = parse_config(data, base_dir=base_dir)
        except ConfigError as exc:
            problems += [Problem("(file)", line) for line in str(exc).splitlines()]
    return config, problems


#: below this an idle gateway's heartbeats are most of its bill: in bench/air_bench.py's profile (c)
#: one heartbeat cycle on a connect-on-demand link (resumed connect, the batch, its PUBACK, the close)
#: costs about 3.5 KB on the air (14.1 KB/day at the default four a day)
HEARTBEAT_FLOOR_S = 900.0
HEARTBEAT_CYCLE_KB = 3.5


def advice(config: GatewayConfig) -> list[Problem]:
    """What validates but spends a data plan for little: warnings, not errors (tests and benchmarks
    compress time on purpose)."""
    found = []
    beat = config.uplink.heartbeat_s
    if 0 < beat < HEARTBEAT_FLOOR_S:
        per_day = 86_400 / beat
        found.append(
            Problem(
                "uplink.heartbeat_s",
                f"{beat:g} s: an idle gateway would send {per_day:.0f} heartbeat batches a day, about"
                f" {per_day * HEARTBEAT_CYCLE_KB:,.0f} KB on the air (the default 21600 s costs 14 KB;"
                " 0 disables heartbeats)",
            )
        )
    return found


def _top_level(data: dict[str, Any], base_dir: Path) -> tuple[GatewayConfig | None, list[Problem]]:
    """Everything but the sensors (validated one by one), with its paths taken from the file's folder."""
    try:
        return parse_config({**data, "sensors": []}, base_dir=base_dir), []
    except ConfigError as exc:
        problems = []
        for line in str(exc).splitlines():
            where, _, message = line.partition(": ")
            problems.append(Problem(where, message))
        return None, problems


def _name(index: int, raw: Any) -> str:
    sensor_id = raw.get("id") if isinstance(raw, dict) else None
    return (
        f"sensor {sensor_id!r}" if isinstance(sensor_id, str) and sensor_id else f"sensors[{index}] (no id)"
    )


def _sensor(index: int, raw: Any) -> tuple[BusSensor | None, list[Problem]]:
    """One sensor validated on its own, then what its drivers would refuse."""
    name = _name(index, raw)
    try:
        sensor: BusSensor = _SENSOR.validate_python(raw)
    except ValidationError as exc:
        problems = []
        for line in describe_errors(exc):
            where, _, message = line.partition(": ")
            tag, _, rest = where.partition(".")
            where = rest if tag in DRIVER_TAGS and rest else where  # pydantic's discriminator first
            problems.append(Problem(f"{name} {where}", message))
        return None, problems
    return sensor, list(_semantics(name, sensor))


def _semantics(name: str, sensor: BusSensor) -> Iterator[Problem]:
    """Profiles that exist and quantities the protocol emits."""
    profile_quantities = None
    protocol = ""
    section = sensor.section
    if isinstance(section, ModbusSection):
        protocol = f"profile {section.profile}"
        try:
            from drivers.modbus.profile import load_profile

            register_map = load_profile(section.profile, section.profiles_dir)
        except ConfigError:
            shipped = ", ".join(known_profiles(section.profiles_dir)) or "none"
            yield Problem(f"{name} modbus.profile", f"unknown profile {section.profile!r}; known: {shipped}")
            return
        profile_quantities = frozenset(f.quantity for f in register_map.fields)
        if section.fields:
            for missing in quantities.unknown(section.fields, profile_quantities, protocol):
                yield Problem(
                    f"{name} modbus.fields",
                    f"{missing!r} is not in {protocol} ({_listed(profile_quantities)})",
                )
    elif isinstance(section, SerialSection):
        protocol = section.protocol
    elif isinstance(section, ModemSection | LorawanSection):
        protocol = section.codec
    known = quantities.emitted(sensor, profile_quantities)
    if known is None:
        return
    for unknown in quantities.unknown(list(sensor.resolution), known, protocol):
        yield Problem(
            f"{name} resolution.{unknown}",
            f"{protocol} emits no quantity {unknown!r} (it emits: {_listed(known)})",
        )


def _listed(names: frozenset[str]) -> str:
    return ", ".join(sorted(names))


def known_profiles(directory: Path | None) -> list[str]:
    """The Modbus profiles a sensor may name (the shipped ones, or those in its profiles_dir)."""
    from drivers.modbus.profile import SHIPPED_PROFILES

    folder = directory or SHIPPED_PROFILES
    try:
        return sorted(p.stem for p in folder.glob("*.toml"))
    except OSError:
        return []


def _claimed_twice(raw_sensors: list[Any], sensors: list[BusSensor]) -> Iterator[Problem]:
    """Duplicate ids, two sensors on one serial port, one Modbus unit address claimed twice."""
    ids: dict[str, int] = {}
    for raw in raw_sensors:
        sensor_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(sensor_id, str):
            ids[sensor_id] = ids.get(sensor_id, 0) + 1
    for sensor_id, count in ids.items():
        if count > 1:
            yield Problem(f"sensor {sensor_id!r}", f"the id is used by {count} sensors")
    ports: dict[str, list[str]] = {}
    units: dict[tuple[str, int], list[tuple[str, ModbusSection]]] = {}
    for sensor in sensors:
        if not sensor.enabled:
            continue
        port = _serial_port(sensor)
        if port is not None:
            ports.setdefault(port, []).append(sensor.id)
        if isinstance(modbus := sensor.section, ModbusSection):
            units.setdefault((modbus.bus_key, modbus.unit), []).append((sensor.id, modbus))
            if modbus.port is not None:
                ports.setdefault(modbus.port, []).append(f"{sensor.id}")
    for port, users in ports.items():
        modbus_only = all(isinstance(s.section, ModbusSection) for s in sensors if s.id in users)
        if len(users) > 1 and not modbus_only:
            yield Problem(
                f"port {port}", f"used by {len(users)} sensors: {', '.join(users)} (one port, one sensor)"
            )
    for (bus, unit), claimants in units.items():
        if len(claimants) > 1:
            names = ", ".join(repr(sensor_id) for sensor_id, _ in claimants)
            overlap = _overlap(claimants)
            yield Problem(f"modbus {bus}", f"unit {unit} is claimed by sensors {names}{overlap}")


def _serial_port(sensor: BusSensor) -> str | None:
    if isinstance(section := sensor.section, SerialSection | ModemSection):
        return section.port
    return None


def _overlap(claimants: list[tuple[str, ModbusSection]]) -> str:
    """' (both read holding 1-5)' when their registers overlap, else ''."""
    from drivers.modbus.profile import load_profile
    from drivers.modbus.registers import register_count

    spans = []
    for _sensor_id, modbus in claimants:
        try:
            register_map = load_profile(modbus.profile, modbus.profiles_dir)
        except ConfigError:
            return ""
        wanted = set(modbus.fields or [f.quantity for f in register_map.fields])
        spans.append(
            {
                (f.kind.value, a)
                for f in register_map.fields
                if f.quantity in wanted
                for a in range(f.address, f.address + register_count(f.dtype, f.length))
            }
        )
    common = set.intersection(*spans)
    if not common:
        return " (their registers do not overlap, but one slave is one sensor)"
    kind = sorted(common)[0][0]
    addresses = sorted(a for k, a in common if k == kind)
    return f" with overlapping registers ({kind} {addresses[0]}-{addresses[-1]})"


def _files(config: GatewayConfig) -> Iterator[Problem]:
    """What only a run would find: the key, the state directory, the TLS and token files."""
    try:
        signing_key.load_private_key(config.key_file)
    except ConfigError as exc:
        yield Problem("key_file", str(exc))
    if (problem := _state_dir_problem(config.state_dir)) is not None:
        yield Problem("state_dir", problem)
    if config.uplink.transport == "https":
        from gateway.uplink.https import bearer_token, tls_context

        try:
            tls_context(config.uplink.https)
            bearer_token(config.uplink.https)
        except ConfigError as exc:
            yield Problem("uplink.https", str(exc))


def _drivers(data: dict[str, Any], raw_sensors: list[Any], base_dir: Path) -> Iterator[Problem]:
    """What the drivers refuse when they are built, sensor by sensor (codec scripts, profiles' limits)."""
    from gateway.sensors import build_drivers

    for raw in raw_sensors:
        try:
            config = parse_config({**data, "sensors": [raw]}, base_dir=base_dir)
            build_drivers(config)
        except ConfigError as exc:
            sensor_id = raw.get("id")
            yield Problem(f"sensor {sensor_id!r}", str(exc).replace(f"sensor {sensor_id!r}: ", ""))


def _state_dir_problem(state_dir: Path) -> str | None:
    """Why the agent could not create or write its state directory, or None."""
    if state_dir.exists():
        if not state_dir.is_dir():
            return f"{state_dir} exists and is not a directory"
        if not os.access(state_dir, os.W_OK | os.X_OK):
            return f"{state_dir} is not writable by this user (the agent runs as 'gateway')"
        return None
    parent = state_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"{state_dir} does not exist and cannot be created ({parent} is not writable)"
    return None
