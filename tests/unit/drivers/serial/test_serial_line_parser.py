"""The generic regex line parser: named groups -> quantity, unit, scale, offset."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial.codec import NEED_DATA, Event, MalformedFrame, Sample
from drivers.serial.line_parser import LineField, LineParserCodec
from kernel.errors import ProtocolError

PATTERN = r"^T=(?P<t>-?\d+\.\d+);H=(?P<h>\d+\.\d+)(;P=(?P<p>\S+))?$"
FIELDS = {
    "t": LineField("air_temperature", "Cel"),
    "h": LineField("relative_humidity", "%RH"),
    "p": LineField("barometric_pressure", "Pa", scale=100.0),
}


def decode(*chunks: bytes, codec: LineParserCodec | None = None) -> list[Event]:
    codec = codec or LineParserCodec(PATTERN, FIELDS)
    out: list[Event] = []
    for chunk in chunks:
        codec.feed(chunk)
        while (event := codec.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def values(events: list[Event]) -> list[list[tuple[str, float, str]]]:
    return [[(m.quantity, m.value, m.unit) for m in e.measurements] for e in events if isinstance(e, Sample)]


def test_named_groups_become_measurements_with_scale() -> None:
    assert values(decode(b"T=21.53;H=45.2;P=1013.25\r\n")) == [
        [
            ("air_temperature", 21.53, "Cel"),
            ("relative_humidity", 45.2, "%RH"),
            ("barometric_pressure", 101325.0, "Pa"),
        ]
    ]


def test_an_optional_group_that_did_not_match_gives_no_reading() -> None:
    assert values(decode(b"T=-1.50;H=99.0\n")) == [
        [("air_temperature", -1.5, "Cel"), ("relative_humidity", 99.0, "%RH")]
    ]


def test_offset_is_applied_after_scale() -> None:
    codec = LineParserCodec(r"raw=(?P<r>\d+)", {"r": LineField("water_temperature", "Cel", 0.1, -40.0)})
    assert values(decode(b"raw=612\n", codec=codec)) == [[("water_temperature", 21.2, "Cel")]]


def test_banner_lines_are_ignored_and_counted_and_garbage_lines_too() -> None:
    codec = LineParserCodec(PATTERN, FIELDS)
    events = decode(b"SensorCorp v1.2 ready\r\n\x00\xff\r\n", b"T=1.00;H=2.00\r\n", codec=codec)
    assert len(values(events)) == 1
    assert codec.statistics().ignored == 2


def test_a_group_that_is_not_a_number_is_malformed() -> None:
    events = decode(b"T=1.00;H=2.00;P=ERR\r\n")
    assert isinstance(events[0], MalformedFrame)


def test_byte_by_byte_equals_whole_input() -> None:
    stream = b"T=1.00;H=2.00\r\nnoise\r\nT=3.00;H=4.00;P=5\r\n"
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == decode(stream)


def test_fields_must_name_groups_of_the_pattern() -> None:
    with pytest.raises(ValueError, match="not named groups"):
        LineParserCodec(r"(?P<x>\d+)", {"y": LineField("a", "b")})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_fuzz_only_protocol_errors_come_out(chunks: list[bytes]) -> None:
    for event in decode(*chunks):
        assert isinstance(event, Sample | ProtocolError)


#: whole noise lines (no "T=" in them, so the pattern cannot match them)
NOISE_LINE = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"T", b"") + b"\r\n")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-500, 500), st.integers(0, 1000)), max_size=6),
    NOISE_LINE,
    st.integers(1, 40),
)
def test_fuzz_lines_survive_noise_lines_and_any_chunking(
    sent: list[tuple[int, int]], noise: bytes, chunk: int
) -> None:
    lines = [f"T={t / 100:.2f};H={h / 10:.1f}\r\n".encode() for t, h in sent]
    stream = noise + noise.join(lines) + noise
    events = decode(*(stream[i : i + chunk] for i in range(0, len(stream), chunk)))
    assert values(events) == [
        [("air_temperature", t / 100, "Cel"), ("relative_humidity", h / 10, "%RH")] for t, h in sent
    ]
