"""SDS011 codec and commands: published frames, byte by byte, garbage, bad checksums, fuzzing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial import sds011
from drivers.serial.codec import NEED_DATA, ChecksumMismatch, Event, Reply, Sample
from drivers.serial.sds011 import Sds011Codec
from kernel.errors import ProtocolError

# PM2.5 = 0x0048/10 = 7.2, PM10 = 0x0090/10 = 14.4, device id A160 (a frame as the datasheet lays it out)
FRAME = bytes.fromhex("AA C0 48 00 90 00 60 A1 D9 AB")


def decode(*chunks: bytes, codec: Sds011Codec | None = None) -> list[Event]:
    codec = codec or Sds011Codec()
    out: list[Event] = []
    for chunk in chunks:
        codec.feed(chunk)
        while (event := codec.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def pm(events: list[Event]) -> list[tuple[float, float]]:
    return [(e.measurements[0].value, e.measurements[1].value) for e in events if isinstance(e, Sample)]


def test_a_data_frame_gives_pm2_5_and_pm10_in_ug_per_m3() -> None:
    (sample,) = decode(FRAME)
    assert isinstance(sample, Sample)
    assert [(m.quantity, m.value, m.unit) for m in sample.measurements] == [
        ("pm2_5", 7.2, "ug/m3"),
        ("pm10", 14.4, "ug/m3"),
    ]


def test_byte_by_byte_equals_whole_input() -> None:
    stream = FRAME + sds011.data_frame(3.1, 5.5) + sds011.reply_frame(sds011.SLEEP_WORK, 1, 0)
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == decode(stream)


def test_garbage_with_false_heads_around_frames_is_skipped() -> None:
    codec = Sds011Codec()
    garbage = b"\xaa\x00\xab\xaa\xc0\x01"
    events = decode(garbage + FRAME + garbage + FRAME + b"\xaa", codec=codec)
    assert pm(events) == [(7.2, 14.4), (7.2, 14.4)]
    assert codec.statistics().garbage_bytes >= 2 * len(garbage) - 1


def test_a_bad_checksum_is_reported_and_the_following_frame_decodes() -> None:
    broken = FRAME[:8] + b"\x00" + FRAME[9:]
    codec = Sds011Codec()
    events = decode(broken + FRAME, codec=codec)
    assert isinstance(events[0], ChecksumMismatch)
    assert pm(events) == [(7.2, 14.4)]
    assert codec.statistics().checksum_errors == 1


def test_a_false_head_in_garbage_does_not_swallow_the_next_frame() -> None:
    real = sds011.data_frame(1.0, 0xAB / 10)  # its byte 4 is AB
    assert real[4] == sds011.TAIL
    garbage = b"\xaa\xc0\x01\x02\x03"  # with real[:5] a 10-byte "frame" ending in AB
    events = decode(garbage + real)
    assert pm(events) == [(1.0, 17.1)]


def test_replies_to_commands_are_reply_events() -> None:
    (reply,) = decode(sds011.reply_frame(sds011.REPORTING_MODE, 1, 1))
    assert reply == Reply("reporting_mode", "010100")


def test_commands_match_the_published_examples() -> None:
    # Control Protocol V1.3: "query data command" and "set sleep" examples
    assert sds011.query_data() == bytes.fromhex("AAB404" + "00" * 12 + "FFFF02AB")
    assert sds011.set_sleep(True) == bytes.fromhex("AAB4060100" + "00" * 10 + "FFFF05AB")
    assert sds011.set_sleep(False) == bytes.fromhex("AAB4060101" + "00" * 10 + "FFFF06AB")
    assert sds011.set_query_mode(True) == bytes.fromhex("AAB4020101" + "00" * 10 + "FFFF02AB")


def test_a_command_round_trips_through_the_device_side_parser() -> None:
    assert sds011.parse_command(sds011.set_working_period(5, 0xA160)) == (
        sds011.WORKING_PERIOD, bytes([1, 5]) + bytes(10), 0xA160
    )  # fmt: skip
    assert sds011.parse_command(sds011.query_data()[:-2] + b"\x00\xab") is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_fuzz_only_protocol_errors_come_out(chunks: list[bytes]) -> None:
    for event in decode(*chunks):
        assert isinstance(event, Sample | Reply | ProtocolError)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9999), st.integers(0, 9999)), max_size=5),
    st.binary(max_size=20).map(lambda b: b.replace(b"\xaa", b"")),
    st.integers(1, 17),
)
def test_fuzz_frames_survive_noise_and_any_chunking(
    values: list[tuple[int, int]], noise: bytes, chunk: int
) -> None:
    frames = [sds011.data_frame(a / 10, b / 10) for a, b in values]
    stream = noise + noise.join(frames) + noise
    events = decode(*(stream[i : i + chunk] for i in range(0, len(stream), chunk)))
    assert pm(events) == [(a / 10, b / 10) for a, b in values]
