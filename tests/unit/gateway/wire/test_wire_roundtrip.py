"""Batches decode to exactly what was encoded, at each series' declared resolution."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire import (
    FORMAT_VERSION,
    Batch,
    Event,
    Gap,
    Keyring,
    ReadingColumns,
    SeriesInfo,
    WindowColumns,
    encode_batch,
    kid_for,
    sign,
    verify_and_decode,
)
from kernel.model import Quality, Reading

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
T0 = 1_764_150_000_000


def roundtrip(
    series: list[SeriesInfo],
    readings: ReadingColumns,
    windows: WindowColumns | None = None,
    gaps: tuple[Gap, ...] = (),
    events: tuple[Event, ...] = (),
) -> Batch:
    body = encode_batch(
        gateway_id="gw-7",
        seq=42,
        created_ms=T0,
        series=series,
        readings=readings,
        windows=windows,
        gaps=gaps,
        events=events,
    )
    ring = Keyring()
    kid = ring.add("gw-7", KEY.public_key())
    return verify_and_decode(sign(body, KEY, kid), ring)


def columns(series: list[int], ts: list[int], values: list[float], quality=None) -> ReadingColumns:
    return ReadingColumns(
        series=np.array(series, np.int32),
        ts_ms=np.array(ts, np.int64),
        value=np.array(values, np.float64),
        quality=np.array(quality or [0] * len(series), np.uint16),
    )


def test_header_fields_survive() -> None:
    batch = roundtrip([SeriesInfo("s", "t", "Cel", 0.1)], columns([0], [T0], [1.5]))
    assert (batch.version, batch.gateway_id, batch.seq, batch.created_ms) == (
        FORMAT_VERSION,
        "gw-7",
        42,
        T0,
    )
    assert batch.kid == kid_for(KEY.public_key())
    assert batch.series == (SeriesInfo("s", "t", "Cel", 0.1),)


def test_quantised_values_decode_to_the_exact_decimal_floats() -> None:
    rng = np.random.default_rng(7)
    cents = rng.integers(-500_000, 500_000, 1000)
    texts = [f"{c / 100:.2f}" for c in cents]
    values = [float(t) for t in texts]
    batch = roundtrip(
        [SeriesInfo("s", "t", "Cel", 0.01)],
        columns([0] * 1000, list(range(T0, T0 + 1000)), values),
    )
    assert [repr(v) for v in batch.readings.value.tolist()] == [repr(float(t)) for t in texts]


@pytest.mark.parametrize("decimals", [0, 1, 3, 5, 8])
def test_each_decimal_resolution_is_exact(decimals: int) -> None:
    rng = np.random.default_rng(decimals)
    values = [round(float(x), decimals) for x in rng.normal(50, 20, 300)]
    batch = roundtrip(
        [SeriesInfo("s", "q", "u", 10.0**-decimals)],
        columns([0] * 300, [T0 + 1000 * i for i in range(300)], values),
    )
    assert batch.readings.value.tolist() == values


def test_values_off_the_grid_are_rounded_to_the_declared_resolution() -> None:
    batch = roundtrip(
        [SeriesInfo("s", "q", "u", 0.5), SeriesInfo("s2", "q", "u", 0.1)],
        columns([0, 0, 1], [T0, T0 + 1, T0], [1.26, -0.74, 2.04]),
    )
    assert batch.readings.value.tolist() == [1.5, -0.5, 2.0]


def test_lossless_series_decode_bit_identical_including_nan_payloads() -> None:
    odd_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    values = [0.1, -0.0, math.inf, -math.inf, odd_nan, 5e-324, 1.7976931348623157e308]
    batch = roundtrip(
        [SeriesInfo("s", "q", "u", None)],
        columns([0] * len(values), [T0 + i for i in range(len(values))], values),
    )
    assert batch.readings.value.tobytes() == np.array(values, np.float64).tobytes()


def test_non_finite_values_in_a_quantised_series_survive() -> None:
    values = [20.5, math.nan, 20.7, math.inf, 1e300, 20.6]
    batch = roundtrip(
        [SeriesInfo("s", "q", "u", 0.1)],
        columns([0] * 6, [T0 + i for i in range(6)], values),
    )
    decoded = batch.readings.value
    assert decoded[[0, 2, 4, 5]].tolist() == [20.5, 20.7, 1e300, 20.6]
    assert math.isnan(decoded[1]) and decoded[3] == math.inf


def test_readings_come_back_sorted_by_series_then_time() -> None:
    series = [SeriesInfo("a", "q", "u", 1.0), SeriesInfo("b", "q", "u", 1.0)]
    batch = roundtrip(series, columns([1, 0, 1, 0], [T0 + 5, T0 + 9, T0 + 1, T0 + 2], [1, 2, 3, 4]))
    assert batch.readings.series.tolist() == [0, 0, 1, 1]
    assert batch.readings.ts_ms.tolist() == [T0 + 2, T0 + 9, T0 + 1, T0 + 5]
    assert batch.readings.value.tolist() == [4, 2, 3, 1]


def test_timestamps_round_to_the_declared_time_resolution() -> None:
    jittered = [T0 + 60_000 * i + d for i, d in enumerate([-200, 150, 499, -500, 0])]
    batch = roundtrip(
        [SeriesInfo("s", "q", "u", 1.0, time_resolution_ms=1000)],
        columns([0] * 5, jittered, [1, 2, 3, 4, 5]),
    )
    # nearest multiple, a tie (exactly half a step) rounds up
    assert batch.readings.ts_ms.tolist() == [T0 + 60_000 * i for i in range(5)]


def test_millisecond_timestamps_are_exact_with_irregular_gaps_and_duplicates() -> None:
    ts = [T0 - 10**9, T0, T0, T0 + 1, T0 + 7, T0 + 86_400_000, -5, 2**62]
    batch = roundtrip(
        [SeriesInfo("s", "q", "u", None)],
        columns([0] * len(ts), ts, list(range(len(ts)))),
    )
    assert batch.readings.ts_ms.tolist() == sorted(ts)


def test_quality_flags_survive() -> None:
    flags = [0, int(Quality.INVALID), 0, int(Quality.LATE | Quality.ESTIMATED), 0xFFFF]
    batch = roundtrip(
        [SeriesInfo("s", "q", "u", 0.1)],
        columns([0] * 5, [T0 + i for i in range(5)], [1, 2, 3, 4, 5], flags),
    )
    assert batch.readings.quality.tolist() == flags


def test_iter_readings_gives_domain_readings() -> None:
    batch = roundtrip(
        [SeriesInfo("weather-1", "air_temperature", "Cel", 0.1)],
        columns([0, 0], [T0, T0 + 1000], [12.3, 12.4], [0, int(Quality.CLOCK_UNSYNCED)]),
    )
    assert list(batch.iter_readings()) == [
        Reading("weather-1", "air_temperature", T0, 12.3, "Cel"),
        Reading("weather-1", "air_temperature", T0 + 1000, 12.4, "Cel", Quality.CLOCK_UNSYNCED),
    ]


def test_from_readings_builds_columns_against_the_series_table() -> None:
    table = [SeriesInfo("a", "t", "Cel", 0.1), SeriesInfo("b", "h", "%", 1.0)]
    readings = [Reading("b", "h", T0, 55.0, "%"), Reading("a", "t", T0, 20.1, "Cel")]
    cols = ReadingColumns.from_readings(readings, table)
    assert cols.series.tolist() == [1, 0]
    with pytest.raises(ValueError, match="series table"):
        ReadingColumns.from_readings([Reading("c", "t", T0, 1.0, "Cel")], table)


def test_windows_gaps_and_events_survive() -> None:
    rng = np.random.default_rng(3)
    n = 50
    start = T0 + 60_000 * np.arange(n)
    windows = WindowColumns(
        series=rng.integers(0, 2, n),
        window_start=start,
        window_ms=np.full(n, 60_000),
        rev=rng.integers(0, 3, n),
        count=rng.integers(0, 100, n),
        nan_count=rng.integers(0, 3, n),
        min=rng.normal(size=n),
        max=rng.normal(size=n),
        mean=np.where(np.arange(n) % 7 == 0, np.nan, rng.normal(size=n)),
        std=rng.normal(size=n),
        first=rng.normal(size=n),
        last=rng.normal(size=n),
        first_ts=start + 3,
        last_ts=start + 59_000,
    )
    gaps = (Gap(1, T0, T0 + 600_000, 10, "disk full: dropped oldest"),)
    events = (Event(T0, "serial:sds011", "stale", "no frame for 30 s"),)
    table = [SeriesInfo("a", "t", "Cel", 0.1), SeriesInfo("b", "pm10", "ug/m3", None)]
    batch = roundtrip(table, ReadingColumns.empty(), windows, gaps, events)
    for name in ("series", "window_start", "window_ms", "rev", "count", "nan_count", "first_ts"):
        assert getattr(batch.windows, name).tolist() == getattr(windows, name).tolist(), name
    for name in ("min", "max", "mean", "std", "first", "last"):
        assert getattr(batch.windows, name).tobytes() == getattr(windows, name).tobytes(), name
    assert batch.windows.last_ts.tolist() == windows.last_ts.tolist()
    assert (batch.gaps, batch.events) == (gaps, events)
    assert len(batch.readings) == 0


def test_an_empty_batch_roundtrips() -> None:
    batch = roundtrip([], ReadingColumns.empty())
    assert len(batch.readings) == 0 and len(batch.windows) == 0 and batch.series == ()


def test_encoding_rejects_a_series_index_outside_the_table() -> None:
    with pytest.raises(ValueError, match="series table"):
        encode_batch(
            gateway_id="g",
            seq=1,
            created_ms=T0,
            series=[SeriesInfo("s", "q", "u")],
            readings=columns([1], [T0], [1.0]),
        )


def test_encoding_is_deterministic() -> None:
    def body() -> bytes:
        return encode_batch(
            gateway_id="g",
            seq=1,
            created_ms=T0,
            series=[SeriesInfo("s", "q", "u", 0.01)],
            readings=columns([0, 0], [T0, T0 + 1], [1.0, 2.0]),
        )

    assert body() == body()


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[SeriesInfo], ReadingColumns]:
    """Random series tables and readings that lie on each series' declared resolution."""
    n_series = draw(st.integers(1, 4))
    decimals = [draw(st.integers(0, 6)) for _ in range(n_series)]
    tres = [draw(st.sampled_from([1, 10, 1000, 60_000])) for _ in range(n_series)]
    table = [
        SeriesInfo(f"s{i}", "q", "u", 10.0**-d, t)
        for i, (d, t) in enumerate(zip(decimals, tres, strict=True))
    ]
    n = draw(st.integers(0, 400))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    series = rng.integers(0, n_series, n)
    grid = draw(st.sampled_from([1.0, 50 / 3, 7.5, 1000.0]))  # steps on a coarser grid, or not
    walk = np.cumsum(np.rint(rng.integers(-40, 41, n) * grid)) + draw(st.integers(-(10**9), 10**9))
    ts = T0 + np.cumsum(rng.integers(0, 3 * max(tres), n))
    values = [int(w) / 10 ** decimals[s] for w, s in zip(walk.tolist(), series.tolist(), strict=True)]
    return table, columns(series.tolist(), ts.tolist(), values)


@settings(max_examples=150, deadline=None)
@given(batches())
def test_any_batch_roundtrips_exactly_at_its_resolution(
    case: tuple[list[SeriesInfo], ReadingColumns],
) -> None:
    table, cols = case
    batch = roundtrip(table, cols)
    order = np.lexsort((cols.ts_ms, cols.series))
    tres = np.array([s.time_resolution_ms for s in table])[cols.series[order]]
    assert batch.readings.series.tolist() == cols.series[order].tolist()
    assert batch.readings.ts_ms.tolist() == ((cols.ts_ms[order] + tres // 2) // tres * tres).tolist()
    assert batch.readings.value.tolist() == cols.value[order].tolist()


def test_numpy_scalars_from_a_database_row_are_accepted() -> None:
    table = [SeriesInfo("s", "q", "u", np.float64(0.1), np.int64(1000))]
    batch = roundtrip(
        table,
        columns([0], [T0], [1.5]),
        gaps=(Gap(np.int32(0), np.int64(T0), np.int64(T0 + 1), np.int64(1), "lost"),),  # type: ignore[arg-type]
    )
    assert batch.series == (SeriesInfo("s", "q", "u", 0.1, 1000),)
    assert batch.gaps == (Gap(0, T0, T0 + 1, 1, "lost"),)
