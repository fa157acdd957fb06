"""PMS5003/7003 codec and commands: frames, byte by byte, garbage, bad checksums, fuzzing."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial import pms5003
from drivers.serial.codec import NEED_DATA, ChecksumMismatch, Event, Reply, Sample
from drivers.serial.pms5003 import Pms5003Codec
from kernel.errors import ProtocolError


def decode(*chunks: bytes, codec: Pms5003Codec | None = None) -> list[Event]:
    codec = codec or Pms5003Codec()
    out: list[Event] = []
    for chunk in chunks:
        codec.feed(chunk)
        while (event := codec.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def pm(events: list[Event]) -> list[tuple[float, ...]]:
    return [tuple(m.value for m in e.measurements) for e in events if isinstance(e, Sample)]


def handmade_frame() -> bytes:
    # built byte by byte from the datasheet, independently of pms5003.frame()
    words = struct.pack(">13H", 5, 8, 11, 4, 7, 10, 1200, 350, 70, 6, 2, 1, 0)
    body = b"\x42\x4d\x00\x1c" + words
    return body + (sum(body) & 0xFFFF).to_bytes(2, "big")


def test_a_data_frame_gives_atmospheric_pm1_pm2_5_pm10() -> None:
    (sample,) = decode(handmade_frame())
    assert isinstance(sample, Sample)
    assert [(m.quantity, m.value, m.unit) for m in sample.measurements] == [
        ("pm1", 4.0, "ug/m3"),
        ("pm2_5", 7.0, "ug/m3"),
        ("pm10", 10.0, "ug/m3"),
    ]


def test_byte_by_byte_equals_whole_input() -> None:
    stream = handmade_frame() + pms5003.data_frame(1, 2, 3) + pms5003.frame(bytes([0xE1, 0]))
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == decode(stream)


def test_garbage_and_a_bad_checksum_are_counted_and_decoding_continues() -> None:
    codec = Pms5003Codec()
    bad = handmade_frame()[:-1] + b"\x00"
    events = decode(b"B\x00BM\xff\xff" + bad + b"noise" + handmade_frame() + b"B", codec=codec)
    assert isinstance(events[0], ChecksumMismatch)
    assert pm(events) == [(4.0, 7.0, 10.0)]
    stats = codec.statistics()
    assert stats.checksum_errors == 1 and stats.frames == 1 and stats.garbage_bytes >= 5


def test_a_false_header_in_garbage_does_not_swallow_the_next_frame() -> None:
    events = decode(b"BM\x00\x1c" + handmade_frame() + pms5003.data_frame(1, 2, 3))
    assert pm(events)[-2:] == [(4.0, 7.0, 10.0), (1.0, 2.0, 3.0)]


def test_command_acknowledgements_are_replies() -> None:
    # the PMS7003 acknowledges "passive mode" with 42 4D 00 04 E1 00 01 74
    assert decode(bytes.fromhex("424D0004E1000174")) == [Reply("mode", "0")]


def test_commands_match_the_datasheet() -> None:
    assert pms5003.read_passive() == bytes.fromhex("424DE200000171")
    assert pms5003.set_passive_mode(True) == bytes.fromhex("424DE100000170")
    assert pms5003.set_sleep(True) == bytes.fromhex("424DE400000173")
    assert pms5003.parse_command(pms5003.set_sleep(False)) == (pms5003.SLEEP_WAKE, 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=70), max_size=8))
def test_fuzz_only_protocol_errors_come_out(chunks: list[bytes]) -> None:
    for event in decode(*chunks):
        assert isinstance(event, Sample | Reply | ProtocolError)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 999), st.integers(0, 999), st.integers(0, 999)), max_size=4),
    st.binary(max_size=20).map(lambda b: b.replace(b"B", b"")),
    st.integers(1, 40),
)
def test_fuzz_frames_survive_noise_and_any_chunking(
    values: list[tuple[int, int, int]], noise: bytes, chunk: int
) -> None:
    frames = [pms5003.data_frame(*v) for v in values]
    stream = noise + noise.join(frames) + noise
    events = decode(*(stream[i : i + chunk] for i in range(0, len(stream), chunk)))
    assert pm(events) == [tuple(float(x) for x in v) for v in values]
