"""Sections, profiles and how sensors become one driver per bus."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drivers.base import DriverSpec
from drivers.modbus import build_drivers
from drivers.modbus.config import ModbusSection
from drivers.modbus.profile import SHIPPED_PROFILES, load_profile, parse_profile
from kernel.errors import ConfigError


def spec(sensor: str, **section) -> DriverSpec[ModbusSection]:
    section.setdefault("profile", "radar_level")
    return DriverSpec(sensor, ModbusSection(**section))


@pytest.mark.parametrize("name", sorted(p.stem for p in SHIPPED_PROFILES.glob("*.toml")))
def test_every_shipped_profile_loads_with_units_and_a_manual(name):
    profile = load_profile(name)
    assert profile.manual
    assert all(f.unit for f in profile.fields)


def test_shipped_profiles_include_meter_analog_module_and_radar():
    names = {p.stem for p in SHIPPED_PROFILES.glob("*.toml")}
    assert {"sdm630", "analog_4_20ma", "radar_level"} <= names
    assert len(load_profile("sdm630").fields) >= 60


def test_profile_error_names_the_key_path():
    data = {
        "name": "x",
        "manual": "m",
        "fields": [{"quantity": "Bad Name", "unit": "V", "kind": "input", "address": 0, "type": "int16"}],
    }
    with pytest.raises(ConfigError, match=r"fields\.0\.quantity"):
        parse_profile(data)


def test_bit_table_field_must_be_bool():
    data = {
        "name": "x",
        "manual": "m",
        "fields": [{"quantity": "door", "unit": "1", "kind": "coil", "address": 0, "type": "int16"}],
    }
    with pytest.raises(ConfigError, match="bool"):
        parse_profile(data)


def test_unknown_profile_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope"):
        load_profile("nope", tmp_path)


def test_section_needs_exactly_one_of_port_and_host():
    with pytest.raises(ValidationError):
        ModbusSection(unit=1, profile="sdm630")
    with pytest.raises(ValidationError):
        ModbusSection(unit=1, profile="sdm630", port="/dev/ttyUSB0", host="10.0.0.2")


def test_sensors_on_one_port_share_one_driver_and_tcp_hosts_get_their_own():
    drivers = build_drivers(
        [
            spec("a", port="/dev/ttyUSB0", unit=1),
            spec("b", port="/dev/ttyUSB0", unit=2, profile="sdm630"),
            spec("c", host="10.0.0.2", unit=1),
            spec("d", host="10.0.0.3", unit=1),
        ]
    )
    assert sorted(d.name for d in drivers) == [
        "modbus:rtu:/dev/ttyUSB0",
        "modbus:tcp:10.0.0.2:502",
        "modbus:tcp:10.0.0.3:502",
    ]
    rtu = next(d for d in drivers if "rtu" in d.name)
    assert [s.unit for s in rtu.statistics().slaves] == [1, 2]


def test_one_bus_with_two_baud_rates_is_a_config_error():
    with pytest.raises(ConfigError, match="disagree"):
        build_drivers([spec("a", port="/dev/x", unit=1), spec("b", port="/dev/x", unit=2, baud=19200)])


def test_one_unit_twice_on_a_bus_is_a_config_error():
    with pytest.raises(ConfigError, match="unit"):
        build_drivers([spec("a", port="/dev/x", unit=1), spec("b", port="/dev/x", unit=1)])


def test_unknown_field_selection_names_the_sensor():
    with pytest.raises(ConfigError, match=r"'a'.*nope"):
        build_drivers([spec("a", port="/dev/x", unit=1, fields=["nope"])])


def test_field_selection_and_gap_override_change_the_plan():
    [driver] = build_drivers(
        [spec("a", port="/dev/x", unit=1, fields=["distance", "installation_height"], max_gap=0)]
    )
    assert driver.statistics().slaves[0].reads_per_poll == 2


def test_forbidden_range_ending_before_it_starts_is_a_config_error():
    data = {
        "name": "x",
        "manual": "m",
        "forbidden": [{"kind": "holding", "start": 20, "end": 10}],
        "fields": [{"quantity": "level", "unit": "m", "kind": "holding", "address": 0, "type": "uint16"}],
    }
    with pytest.raises(ConfigError, match=r"forbidden\.0.*before start"):
        parse_profile(data)
