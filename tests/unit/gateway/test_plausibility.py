"""Implausible values (a checksum-valid 1e300 °C): stored and uploaded flagged OUT_OF_RANGE, counted, kept out of windows."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_batcher_windows import ALLOWED, MAX_LATE, T0, Clock, Gateway, W, raw_of, windows_of

from gateway.agent import StoreSink
from gateway.config import parse_config
from gateway.metrics import render
from gateway.plausibility import DEFAULT_LIMITS, Plausibility
from gateway.window_routing import WindowPolicy
from kernel.errors import ConfigError
from kernel.model import Quality, Reading


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A real store and batcher (the wire format included); sensor "both" uploads windows and raw."""
    policies = {"both": WindowPolicy(W, ALLOWED, MAX_LATE, upload="both")}
    running = Gateway(tmp_path / "buffer.db", policies, Clock(T0))
    yield running
    running.store.close()


def test_a_1e300_degree_reading_is_uploaded_flagged_with_its_value_and_counted(gateway: Gateway) -> None:
    sink = StoreSink(gateway.store, plausibility=Plausibility())
    sink.reading(Reading("weather", "air_temperature", T0 + 1_000, 1e300, "Cel"))
    sink.reading(Reading("weather", "air_temperature", T0 + 2_000, 12.5, "Cel"))
    sink.reading(Reading("weather", "relative_humidity", T0 + 2_000, 100.5, "%RH"))
    gateway.store.flush_blocking(5)
    gateway.clock.now_ms = T0 + W + ALLOWED
    uploaded = sorted(raw_of(gateway.seal()))
    assert uploaded == [
        ("weather", T0 + 1_000, 1e300, Quality.OUT_OF_RANGE),  # kept, never a clean reading
        ("weather", T0 + 2_000, 12.5, Quality.OK),
        ("weather", T0 + 2_000, 100.5, Quality.OUT_OF_RANGE),
    ]
    assert sink.plausibility.out_of_range == {"weather": 2}
    metrics = render({"gateway_id": "gw-test", "out_of_range": dict(sink.plausibility.out_of_range)})
    assert 'gateway_out_of_range{sensor="weather"} 2\n' in metrics


def test_an_implausible_value_is_left_out_of_its_window(gateway: Gateway) -> None:
    sink = StoreSink(gateway.store, plausibility=Plausibility())
    for ts, value in ((1_000, 20.0), (2_000, 5_000.0), (3_000, 30.0)):
        sink.reading(Reading("both", "pm10", T0 + ts, value, "ug/m3"))  # PM above 2000 µg/m³
    gateway.store.flush_blocking(5)
    gateway.clock.now_ms = T0 + W + ALLOWED
    batches = gateway.seal()
    (window,) = windows_of(batches)
    assert (window["count"], window["mean"], window["max"]) == (2, 25.0, 30.0)  # 5000 counted as missing
    assert (T0 + 2_000, 5_000.0, Quality.OUT_OF_RANGE) in [r[1:] for r in raw_of(batches)]


def test_configured_limits_replace_the_default_and_bad_limits_are_refused() -> None:
    sensors = [{"id": "quay", "driver": "serial", "serial": {"port": "/dev/x", "protocol": "nmea"}}]
    sensors[0]["limits"] = {"water_temperature": [-2, 30], "tide": [-5, 5]}
    config = parse_config({"gateway_id": "gw-1", "key_file": "k.pem", "state_dir": "s", "sensors": sensors})
    check = Plausibility({s.id: s.limits for s in config.sensors})
    assert not check.admits(Reading("quay", "water_temperature", 0, 35.0, "Cel"))  # default allows 45
    assert check.admits(Reading("other", "water_temperature", 0, 35.0, "Cel"))
    assert not check.admits(Reading("quay", "tide", 0, 7.0, "m"))  # a quantity the table does not know
    assert check.admits(Reading("quay", "tide", 0, math.nan, "m"))  # missing, not implausible
    sensors[0]["limits"] = {"tide": [5, -5]}
    with pytest.raises(ConfigError, match="low < high"):
        parse_config({"gateway_id": "gw-1", "key_file": "k.pem", "state_dir": "s", "sensors": sensors})


def test_every_default_admits_its_own_range_and_absurd_values_of_any_quantity_are_flagged() -> None:
    check = Plausibility()
    for quantity, limit in DEFAULT_LIMITS.items():
        unit = sorted(limit.units)[0]
        assert check.admits(Reading("s", quantity, 0, limit.low, unit))
        assert check.admits(Reading("s", quantity, 0, limit.high, unit))
        assert not check.admits(Reading("s", quantity, 0, limit.high + 1, unit))
    assert check.admits(Reading("s", "air_temperature", 0, 400.0, "K"))  # another unit: no default
    assert not check.admits(Reading("s", "pulse_count", 0, math.inf, "count"))
    assert not check.admits(Reading("s", "pulse_count", 0, -1e300, "count"))
