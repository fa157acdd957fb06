"""The [sensors.serial] section: protocol-specific options are validated with useful messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drivers.serial import codec_for
from drivers.serial.config import SerialSection
from drivers.serial.line_parser import LineParserCodec

REGEX = {
    "pattern": r"^T=(?P<t>-?\d+\.\d+)$",
    "fields": {"t": {"quantity": "air_temperature", "unit": "Cel"}},
}


def test_a_regex_sensor_builds_a_line_parser_from_its_table() -> None:
    section = SerialSection(port="/dev/ttyUSB0", protocol="regex", regex=REGEX)
    codec = codec_for(section)
    assert isinstance(codec, LineParserCodec)
    codec.feed(b"T=4.25\r\n")
    assert [m.value for e in codec.events() for m in getattr(e, "measurements", ())] == [4.25]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"protocol": "regex"}, "required with protocol"),
        ({"protocol": "nmea", "regex": REGEX}, "only there"),
        ({"protocol": "regex", "regex": {**REGEX, "pattern": "(?P<t>"}}, "not a valid regex"),
        ({"protocol": "regex", "regex": {**REGEX, "pattern": r"(?P<x>\d)"}}, "not named groups"),
        ({"protocol": "nmea", "polling": {"mode": "query"}}, "cannot be polled"),
        ({"protocol": "wxt", "polling": {"mode": "query", "interval_s": 60, "warmup_s": 5}}, "no sleep mode"),
        ({"protocol": "sds011", "polling": {"interval_s": 10, "warmup_s": 9.5}}, "shorter than interval_s"),
        ({"protocol": "wxt", "wxt_address": "10"}, "wxt_address"),
    ],
)
def test_inconsistent_options_are_rejected_with_a_reason(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SerialSection.model_validate({"port": "/dev/ttyUSB0", **options})


def test_the_defaults_keep_the_skeleton_config_valid() -> None:
    section = SerialSection(port="/dev/ttyUSB0", baud=4800)
    assert (section.protocol, section.polling.mode, section.rs485) == ("nmea", "active", None)


def test_every_sensor_in_the_docs_example_is_valid() -> None:
    import tomllib
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[4] / "docs" / "serial.md").read_text()
    block = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    sensors = tomllib.loads(block)["sensors"]
    sections = [SerialSection.model_validate(sensor["serial"]) for sensor in sensors]
    assert [s.protocol for s in sections] == ["nmea", "sds011", "pms5003", "wxt", "regex"]
    codec = codec_for(sections[-1])
    codec.feed(b"T=7.50;H=81.0;P=1012.80\r\n")
    assert [m.value for e in codec.events() for m in getattr(e, "measurements", ())] == [7.5, 81.0, 101280.0]
