"""NMEA 0183 codec: whole input, byte by byte, garbage around frames, bad checksums, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial.codec import (
    NEED_DATA,
    ChecksumMismatch,
    MalformedFrame,
    Measurement,
    Sample,
)
from drivers.serial.nmea import NmeaCodec, checksum, sentence
from kernel.errors import ProtocolError
from kernel.model import Quality

MDA = sentence("WIMDA,29.92,I,1.0132,B,12.5,C,,,81.0,,9.3,C,245.0,T,,,9.7,N,5.0,M")
XDR = sentence("WIXDR,C,12.4,C,0,H,80.5,P,0,P,1.0131,B,0")
MWV = sentence("WIMWV,251.0,R,10.0,N,A")
MTW = sentence("YXMTW,11.2,C")
STREAM = MDA + XDR + MWV + MTW


def values(events: list[object]) -> list[tuple[str, float, str]]:
    out = []
    for event in events:
        assert isinstance(event, Sample)
        out += [(m.quantity, m.value, m.unit) for m in event.measurements]
    return out


def decode(*chunks: bytes, codec: NmeaCodec | None = None) -> list[object]:
    codec = codec or NmeaCodec()
    events: list[object] = []
    for chunk in chunks:
        codec.feed(chunk)
        while (event := codec.next_event()) is not NEED_DATA:
            events.append(event)
    return events


EXPECTED = [
    ("barometric_pressure", 101320.0, "Pa"),
    ("air_temperature", 12.5, "Cel"),
    ("relative_humidity", 81.0, "%RH"),
    ("dew_point", 9.3, "Cel"),
    ("wind_direction", 245.0, "deg"),
    ("wind_speed", 5.0, "m/s"),
    ("air_temperature", 12.4, "Cel"),
    ("relative_humidity", 80.5, "%RH"),
    ("barometric_pressure", 101310.0, "Pa"),
    ("wind_direction", 251.0, "deg"),
    ("wind_speed", pytest.approx(5.144, abs=1e-3)),
    ("water_temperature", 11.2, "Cel"),
]


def test_whole_stream_decodes_every_quantity_in_senml_units() -> None:
    got = values(decode(STREAM))
    assert [g[:2] for g in got] == [e[:2] for e in EXPECTED]
    units = ["Pa", "Cel", "%RH", "Cel", "deg", "m/s", "Cel", "%RH", "Pa", "deg", "m/s", "Cel"]
    assert [g[2] for g in got] == units


def test_byte_by_byte_gives_the_same_events_as_whole_input() -> None:
    one_by_one = decode(*(STREAM[i : i + 1] for i in range(len(STREAM))))
    assert one_by_one == decode(STREAM)


def test_garbage_around_frames_is_skipped_and_counted() -> None:
    codec = NmeaCodec()
    garbage = b"\x00\xff junk\r\n"
    events = decode(b"abc" + MDA + garbage + XDR + b"\x13\x37", codec=codec)
    assert [e.kind for e in events if isinstance(e, Sample)] == ["MDA", "XDR"]
    stats = codec.statistics()
    assert stats.frames == 2
    assert stats.garbage_bytes == 3 + len(garbage)
    assert stats.checksum_errors == 0


def test_a_bad_checksum_is_an_event_and_the_next_sentence_still_decodes() -> None:
    broken = MDA.replace(b"12.5", b"13.5")
    codec = NmeaCodec()
    events = decode(broken + XDR, codec=codec)
    assert isinstance(events[0], ChecksumMismatch)
    assert isinstance(events[1], Sample) and events[1].kind == "XDR"
    assert codec.statistics().checksum_errors == 1


def test_sentence_cut_by_a_hangup_resynchronises_on_the_next_dollar() -> None:
    events = decode(MDA[:20], XDR)
    assert [e.kind for e in events if isinstance(e, Sample)] == ["XDR"]


def test_talker_id_does_not_matter() -> None:
    weather = decode(sentence("WIMTW,4.0,C"))
    other = decode(sentence("IIMTW,4.0,C"))
    assert values(weather) == values(other) == [("water_temperature", 4.0, "Cel")]


def test_missing_or_non_hex_checksum_is_malformed() -> None:
    events = decode(b"$WIMTW,4.0,C\r\n", b"$WIMTW,4.0,C*ZZ\r\n")
    assert [type(e) for e in events] == [MalformedFrame, MalformedFrame]


def test_unknown_sentence_types_are_ignored_but_counted() -> None:
    codec = NmeaCodec()
    events = decode(sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), codec=codec)
    assert events == []
    assert codec.statistics().ignored == 1


def test_xdr_reads_any_transducer_type_and_configured_names() -> None:
    codec = NmeaCodec(xdr_names={"C:WATER": "water_temperature", "BATT": "battery_voltage"})
    line = sentence("IIXDR,C,7.5,C,WATER,U,12.6,V,BATT,A,-3.5,D,PITCH,G,42,,X,P,101325,P,BARO")
    got = values(decode(line, codec=codec))
    assert got == [
        ("water_temperature", 7.5, "Cel"),
        ("battery_voltage", 12.6, "V"),
        ("angle", -3.5, "deg"),
        ("generic", 42.0, "/"),
        ("barometric_pressure", 101325.0, "Pa"),
    ]


def test_xdr_with_a_broken_group_is_malformed() -> None:
    events = decode(sentence("WIXDR,C,7.5,C"))
    assert isinstance(events[0], MalformedFrame)


def test_mwv_with_status_v_is_flagged_invalid() -> None:
    events = decode(sentence("WIMWV,10.0,T,36.0,K,V"))
    assert isinstance(events[0], Sample)
    assert events[0].measurements == (
        Measurement("wind_direction", 10.0, "deg", Quality.INVALID),
        Measurement("wind_speed", 10.0, "m/s", Quality.INVALID),
    )


def test_empty_fields_give_no_reading_instead_of_a_made_up_one() -> None:
    got = values(decode(sentence("WIMDA,,,,,11.0,C,,,,,,,,,,,,,,")))
    assert got == [("air_temperature", 11.0, "Cel")]


def test_nan_is_not_a_reading() -> None:
    assert isinstance(decode(sentence("WIMTW,nan,C"))[0], MalformedFrame)


def test_an_overlong_line_is_dropped_as_garbage_and_decoding_resumes() -> None:
    codec = NmeaCodec()
    events = decode(b"$" + b"A" * 1000, b"\r\n" + MTW, codec=codec)
    assert values(events) == [("water_temperature", 11.2, "Cel")]
    assert codec.statistics().garbage_bytes >= 1000


def test_checksum_is_the_xor_of_the_body() -> None:
    body = b"GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    expected = 0
    for byte in body:
        expected ^= byte
    assert checksum(body) == expected == 0x47


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=12))
def test_fuzz_only_protocol_errors_come_out(chunks: list[bytes]) -> None:
    for event in decode(*chunks):
        assert isinstance(event, Sample | ProtocolError)


NOISE = st.binary(max_size=30).map(lambda b: b.replace(b"$", b"").replace(b"!", b"") + b"\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([MDA, XDR, MWV, MTW]), max_size=6), NOISE, st.integers(1, 64))
def test_fuzz_valid_sentences_survive_noise_and_any_chunking(
    frames: list[bytes], noise: bytes, chunk: int
) -> None:
    stream = noise + noise.join(frames) + noise
    events = decode(*(stream[i : i + chunk] for i in range(0, len(stream), chunk)))
    assert [e for e in events if isinstance(e, Sample)] == [
        e for e in decode(b"".join(frames)) if isinstance(e, Sample)
    ]
