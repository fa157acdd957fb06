"""Vaisala WXT5xx codec: composite messages, unit letters, '#' invalid values, CRC variant, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial.codec import NEED_DATA, ChecksumMismatch, Event, MalformedFrame, Sample
from drivers.serial.wxt import WxtCodec, crc16, crc_chars
from kernel.errors import ProtocolError
from kernel.model import Quality

# the composite message printed in the WXT530 user guide
COMPOSITE = (
    b"0R0,Dn=236D,Dm=283D,Dx=031D,Sn=0.0M,Sm=1.0M,Sx=2.2M,Ta=23.6C,Ua=14.2P,Pa=1026.6H,"
    b"Rc=0.00M,Rd=0s,Ri=0.0M,Hc=0.0M,Hd=0s,Hi=0.0M,Th=24.2C,Vh=0.0N,Vs=12.1V,Vr=3.510V\r\n"
)


def decode(*chunks: bytes, codec: WxtCodec | None = None) -> list[Event]:
    codec = codec or WxtCodec()
    out: list[Event] = []
    for chunk in chunks:
        codec.feed(chunk)
        while (event := codec.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def by_quantity(event: Event) -> dict[str, tuple[float, str, Quality]]:
    assert isinstance(event, Sample)
    return {m.quantity: (m.value, m.unit, m.quality) for m in event.measurements}


def test_composite_message_gives_every_parameter_in_senml_units() -> None:
    (event,) = decode(COMPOSITE)
    got = by_quantity(event)
    assert len(got) == 19
    assert got["wind_direction"] == (283.0, "deg", Quality.OK)
    assert got["wind_speed_max"] == (2.2, "m/s", Quality.OK)
    assert got["air_temperature"] == (23.6, "Cel", Quality.OK)
    assert got["relative_humidity"] == (14.2, "%RH", Quality.OK)
    assert got["barometric_pressure"] == (102660.0, "Pa", Quality.OK)
    assert got["rain_accumulation"] == (0.0, "mm", Quality.OK)
    assert got["supply_voltage"] == (12.1, "V", Quality.OK)


def test_unit_letters_are_converted() -> None:
    (event,) = decode(b"0R1,Sm=36.0K,Dm=090D\r\n0R2,Ta=50.0F,Pa=29.92I\r\n")[:1]
    assert by_quantity(event)["wind_speed"] == (10.0, "m/s", Quality.OK)
    second = decode(b"0R2,Ta=50.0F,Pa=760.0M\r\n")[0]
    assert by_quantity(second)["air_temperature"] == (10.0, "Cel", Quality.OK)
    assert by_quantity(second)["barometric_pressure"][0] == pytest.approx(101325.0, abs=0.1)


def test_hash_marks_a_value_invalid_but_keeps_it() -> None:
    (event,) = decode(b"0R1,Dm=000#,Sm=0.0#\r\n")
    assert by_quantity(event)["wind_direction"] == (0.0, "deg", Quality.INVALID)
    assert by_quantity(event)["wind_speed"] == (0.0, "m/s", Quality.INVALID)


def test_crc_variant_is_verified() -> None:
    body = COMPOSITE.rstrip(b"\r\n").replace(b"0R0", b"0r0")
    good = body + crc_chars(body) + b"\r\n"
    bad = body.replace(b"Ta=23.6", b"Ta=23.7") + crc_chars(body) + b"\r\n"
    codec = WxtCodec()
    events = decode(good + bad, codec=codec)
    assert isinstance(events[0], Sample) and len(events[0].measurements) == 19
    assert isinstance(events[1], ChecksumMismatch)
    assert codec.statistics().checksum_errors == 1


def test_crc_is_the_vaisala_crc16() -> None:
    # reflected 0xA001 from 0: the CRC-16/ARC check value of "123456789" is 0xBB3D
    assert crc16(b"123456789") == 0xBB3D
    assert crc_chars(b"123456789") == bytes([0x40 | 0xB, 0x40 | (0xBB3D >> 6) & 0x3F, 0x40 | 0x3D])


def test_byte_by_byte_and_garbage_before_the_address() -> None:
    stream = b"\x00\xffjunk" + COMPOSITE + b"noise\r\n" + COMPOSITE
    codec = WxtCodec()
    whole = decode(stream, codec=codec)
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == whole
    assert len(whole) == 2
    assert codec.statistics().garbage_bytes == 6 + 7


def test_a_message_cut_by_a_hangup_does_not_spoil_the_next() -> None:
    events = decode(COMPOSITE[:30], COMPOSITE)
    assert len(events) == 1 and len(by_quantity(events[0])) == 19


def test_an_unknown_unit_letter_makes_the_message_malformed() -> None:
    assert isinstance(decode(b"0R2,Ta=23.6Q\r\n")[0], MalformedFrame)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_fuzz_only_protocol_errors_come_out(chunks: list[bytes]) -> None:
    for event in decode(*chunks):
        assert isinstance(event, Sample | ProtocolError)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="=.#abcRrDMC0123456789 ", max_size=60).map(str.encode))
def test_fuzz_message_like_lines(text: bytes) -> None:
    for event in decode(b"0R0," + text + b"\r\n", b"0r0," + text + b"\r\n"):
        assert isinstance(event, Sample | ProtocolError)


def composite(ta: float, sm: float, crc: bool) -> bytes:
    body = f"0{'r' if crc else 'R'}0,Dm=283D,Sm={sm:.1f}M,Ta={ta:.1f}C,Pa=1026.6H".encode()
    return body + (crc_chars(body) if crc else b"") + b"\r\n"


#: noise without line ends or commas, as line noise before a message on the same line
NOISE = st.binary(max_size=30).map(lambda b: bytes(c for c in b if c not in b",\r\n"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-400, 600), st.integers(0, 600), st.booleans()), max_size=5),
    NOISE,
    st.integers(1, 64),
)
def test_fuzz_messages_survive_noise_and_any_chunking(
    values: list[tuple[int, int, bool]], noise: bytes, chunk: int
) -> None:
    frames = [composite(ta / 10, sm / 10, crc) for ta, sm, crc in values]
    stream = noise + b"".join(noise + frame for frame in frames) + noise
    events = decode(*(stream[i : i + chunk] for i in range(0, len(stream), chunk)))
    got = [(by_quantity(e)["air_temperature"][0], by_quantity(e)["wind_speed"][0]) for e in events]
    assert got == [(ta / 10, sm / 10) for ta, sm, _crc in values]
