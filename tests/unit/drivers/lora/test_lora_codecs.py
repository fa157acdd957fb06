"""Payload codecs against the examples TheThingsNetwork/lorawan-devices publishes.

Sources (values copied as data): vendor/dragino/lht65-codec.yaml, vendor/milesight-iot/em300-th-codec.yaml,
vendor/elsys/ers-co2-codec.yaml, ers-lite-codec.yaml, ers-sound-codec.yaml, ers-eye-codec.yaml and
ers-voc-codec.yaml, vendor/decentlab/dl-mbx-codec.yaml.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.lora.codecs import Measurement, codec_for
from kernel.errors import ConfigError, ProtocolError
from kernel.model import Quality


def values(measurements: list[Measurement]) -> dict[str, float]:
    return {m.quantity: m.value for m in measurements}


def test_lht65_published_example() -> None:
    payload = bytes([0xCB, 0xF6, 0x0B, 0x0D, 0x03, 0x76, 0x01, 0x0A, 0xDD, 0x7F, 0xFF])
    decoded = codec_for("lht65").decode(2, payload)
    # BatV 3.062, TempC_SHT 28.29, Hum_SHT 88.6, TempC_DS 27.81
    assert values(decoded) == pytest.approx(
        {"battery_voltage": 3.062, "temperature": 28.29, "humidity": 88.6, "external_temperature": 27.81}
    )
    assert decoded[0].quality == Quality.OK  # Bat_status 3: good


def test_lht65_unknown_fport_is_an_error_like_the_published_example() -> None:
    payload = bytes([0xCB, 0xF6, 0x0B, 0x0D, 0x03, 0x76, 0x01, 0x0A, 0xDD, 0x7F, 0xFF])
    with pytest.raises(ProtocolError, match="FPort"):
        codec_for("lht65").decode(42, payload)


def test_lht65_without_probe_has_no_external_temperature() -> None:
    payload = bytes.fromhex("cbf60b0d0376017fff7fff")
    assert "external_temperature" not in values(codec_for("lht65").decode(2, payload))


def test_em300_th_published_example() -> None:
    payload = bytes([0x01, 0x75, 0x32, 0x03, 0x67, 0xC8, 0x00, 0x04, 0x68, 0x3C])
    got = codec_for("em300_th").decode(1, payload)
    assert values(got) == {"battery": 50, "temperature": 20.0, "humidity": 30.0}
    assert {m.quantity: m.unit for m in got}["temperature"] == "°C"


def test_em300_th_negative_temperature() -> None:
    assert values(codec_for("em300_th").decode(1, bytes.fromhex("0367f6ff"))) == {"temperature": -1.0}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            [0x01, 0x00, 0xE2, 0x02, 0x29, 0x04, 0x00, 0x27, 0x05, 0x06, 0x06, 0x03, 0x08],
            {"temperature": 22.6, "humidity": 41, "light": 39, "motion": 6, "co2": 776},
        ),
        ([0x01, 0x00, 0xE2, 0x02, 0x29], {"temperature": 22.6, "humidity": 41}),
        (  # ers-sound-codec.yaml: soundPeak / soundAvg
            [0x01, 0x00, 0xE2, 0x02, 0x29, 0x04, 0x00, 0x27, 0x05, 0x06, 0x15, 0x01, 0x01],
            {
                "temperature": 22.6,
                "humidity": 41,
                "light": 39,
                "motion": 6,
                "sound_peak": 1,
                "sound_average": 1,
            },
        ),
        (  # ers-eye-codec.yaml
            [0x01, 0x00, 0xE2, 0x02, 0x29, 0x04, 0x00, 0x27, 0x05, 0x06, 0x11, 0x01],
            {"temperature": 22.6, "humidity": 41, "light": 39, "motion": 6, "occupancy": 1},
        ),
        (  # ers-voc-codec.yaml
            [0x01, 0x00, 0xE2, 0x02, 0x29, 0x04, 0x00, 0x27, 0x05, 0x06],
            {"temperature": 22.6, "humidity": 41, "light": 39, "motion": 6},
        ),
    ],
    ids=["ers-co2", "ers-lite", "ers-sound", "ers-eye", "ers-voc"],
)
def test_elsys_published_examples(payload: list[int], expected: dict[str, float]) -> None:
    assert values(codec_for("elsys").decode(1, bytes(payload))) == pytest.approx(expected)


def test_dl_mbx_published_examples() -> None:
    codec = codec_for("dl_mbx")
    first = values(codec.decode(1, bytes([0x02, 0x01, 0x2F, 0x00, 0x03, 0x04, 0xD2, 0x00, 0x01, 0x0B, 0xB1])))
    assert first == pytest.approx({"distance": 1234, "valid_samples": 1, "battery_voltage": 2.993})
    second = values(codec.decode(1, bytes([0x02, 0x01, 0x2F, 0x00, 0x02, 0x0B, 0xB1])))
    assert second == pytest.approx({"battery_voltage": 2.993})


def test_dl_mbx_without_valid_samples_marks_distance_invalid() -> None:
    got = codec_for("dl_mbx").decode(1, bytes.fromhex("02012f000304d200000bb1"))
    assert got[0].quality == Quality.INVALID


def test_unknown_codec_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        codec_for("nope")


@pytest.mark.parametrize("name", ["lht65", "em300_th", "elsys", "dl_mbx"])
@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=40), fport=st.integers(0, 255))
def test_codecs_raise_only_protocol_error_on_garbage(name: str, payload: bytes, fport: int) -> None:
    try:
        result = codec_for(name).decode(fport, payload)
    except ProtocolError:
        return
    assert all(isinstance(m, Measurement) for m in result)
