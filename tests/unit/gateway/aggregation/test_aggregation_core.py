"""aggregate() against a plain-Python reference with exact (Fraction) arithmetic."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.aggregation.core as core_module
import gateway.aggregation.grouping as grouping_module
from gateway.aggregation import Windows, aggregate

EPS = float(np.finfo(np.float64).eps)
TINY = 5e-324  # the smallest subnormal: results below it cannot be told apart


@dataclass
class RefWindow:
    count: int
    nan_count: int
    sum: float
    min: float
    max: float
    mean: float
    std: float
    first: float
    last: float
    first_ts: int
    last_ts: int
    values: list[float]


def _to_float(value: Fraction) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _sqrt(value: Fraction) -> float:
    """Correctly rounded-ish square root of an exact non-negative fraction (no float overflow)."""
    if value == 0:
        return 0.0
    k = (130 - (value.numerator.bit_length() - value.denominator.bit_length())) // 2
    scaled = value * Fraction(4) ** k
    root = math.isqrt(scaled.numerator // scaled.denominator)
    return _to_float(Fraction(root) / Fraction(2) ** k)


def reference(
    series: list[int], ts: list[int], values: list[float], window_ms: int
) -> dict[tuple[int, int], RefWindow]:
    """The statistics as a person would compute them: one window at a time, exact arithmetic."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (s, t) in enumerate(zip(series, ts, strict=True)):
        groups.setdefault((s, (t // window_ms) * window_ms), []).append(i)
    result = {}
    for key, rows in groups.items():
        valid = [i for i in rows if not math.isnan(values[i])]
        timed = valid or rows
        first = min(timed, key=lambda i: (ts[i], i))
        last = max(timed, key=lambda i: (ts[i], i))
        exact = [Fraction(values[i]) for i in valid]
        n = len(valid)
        mean = sum(exact, Fraction(0)) / n if n else None
        var = sum(((x - mean) ** 2 for x in exact), Fraction(0)) / n if mean is not None else None
        result[key] = RefWindow(
            count=n,
            nan_count=len(rows) - n,
            sum=_to_float(sum(exact, Fraction(0))) if n else math.nan,
            min=min(values[i] for i in valid) if n else math.nan,
            max=max(values[i] for i in valid) if n else math.nan,
            mean=_to_float(mean) if mean is not None else math.nan,
            std=_sqrt(var) if var is not None else math.nan,
            first=values[first],
            last=values[last],
            first_ts=ts[first],
            last_ts=ts[last],
            values=[values[i] for i in valid],
        )
    return result


def assert_close(got: float, want: float, slack: float, what: str) -> None:
    """Within 1e-9 relative, plus the rounding slack a float64 algorithm cannot avoid."""
    if math.isinf(want) and math.copysign(1.0, got) == math.copysign(1.0, want):
        # inputs are finite, so an infinite reference is an exact result past the largest float
        # (correct rounding of a value within half an ulp of it): a float64 algorithm may land on it
        assert math.isinf(got) or abs(got) == sys.float_info.max, (what, got, want)
        return
    if math.isnan(want) or math.isinf(want):
        assert got == want or (math.isnan(got) and math.isnan(want)), (what, got, want)
        return
    tolerance = 1e-9 * abs(want) + slack + 4 * TINY
    if math.isinf(got) and abs(want) + tolerance >= sys.float_info.max:
        return  # a sum within rounding of the largest float may round to infinity
    assert abs(got - want) <= tolerance, (what, got, want)


def check_against_reference(
    windows: Windows, ref: dict[tuple[int, int], RefWindow], quantile_levels: tuple[float, ...] = ()
) -> None:
    keys = list(zip(windows.series.tolist(), windows.window_start.tolist(), strict=True))
    assert keys == sorted(ref), "one row per (series, window) with a reading, sorted"
    for row, key in enumerate(keys):
        want = ref[key]
        assert windows.count[row] == want.count
        assert windows.nan_count[row] == want.nan_count
        assert windows.first_ts[row] == want.first_ts
        assert windows.last_ts[row] == want.last_ts
        assert windows.rev[row] == 0
        for name in ("min", "max", "first", "last"):
            got, expected = float(getattr(windows, name)[row]), getattr(want, name)
            assert got == expected or (math.isnan(got) and math.isnan(expected)), (name, key)
        n = max(want.count, 1)
        magnitude = max((abs(x) for x in want.values), default=0.0)
        spread = (want.max - want.min) if want.count else 0.0
        # backward-error slack of a float64 sum of n terms; the spread (not the magnitude) bounds
        # the std's error, which is what "no catastrophic cancellation" means
        assert_close(float(windows.mean[row]), want.mean, 8 * n * EPS * magnitude, "mean")
        assert_close(float(windows.sum[row]), want.sum, 8 * n * n * EPS * magnitude, "sum")
        assert_close(float(windows.std[row]), want.std, 8 * n * EPS * spread, "std")
        for column, level in enumerate(quantile_levels):
            assert_close(
                float(windows.quantiles[row, column]),
                _quantile(sorted(want.values), level),
                4 * EPS * magnitude,
                f"q{level}",
            )


def _quantile(ordered: list[float], level: float) -> float:
    if not ordered:
        return math.nan
    position = level * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    low, high = Fraction(ordered[below]), Fraction(ordered[above])
    return float(low + (high - low) * (Fraction(position) - below))  # exact: no overflow at the extremes


@contextlib.contextmanager
def small_chunks(size: int = 3) -> Iterator[None]:
    """Process readings a few at a time so chunk boundaries fall inside every window."""
    saved = core_module.CHUNK, grouping_module.CHUNK
    core_module.CHUNK = grouping_module.CHUNK = size
    try:
        yield
    finally:
        core_module.CHUNK, grouping_module.CHUNK = saved


WINDOW_MS = st.sampled_from([1, 7, 1_000, 60_000, 86_400_000])
SERIES = st.one_of(st.integers(0, 3), st.integers(-(2**62), 2**62), st.sampled_from([10**9, -5]))
TIMESTAMPS = st.one_of(
    st.integers(-5_000, 5_000),
    st.integers(0, 4).map(lambda k: k * 60_000 + (-1, 0, 1)[k % 3]),  # on and around edges
    st.integers(-(2**62), 2**62),  # before 1970 and far in the future
    st.integers(1_700_000_000_000, 1_700_000_200_000),
)
VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1e6, 1e6),
    st.floats(-1e-3, 1e-3).map(lambda x: 1e12 + x),  # huge offset, tiny spread
    st.floats(1e-300, 1e-290),  # tiny magnitudes
    st.just(math.nan),
)


@st.composite
def readings(draw: st.DrawFn, max_size: int = 40) -> tuple[list[int], list[int], list[float]]:
    n = draw(st.integers(0, max_size))
    rows = draw(st.lists(st.tuples(SERIES, TIMESTAMPS, VALUES), min_size=n, max_size=n))
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


@settings(max_examples=300, deadline=None)
@given(readings(), WINDOW_MS, st.booleans())
def test_aggregate_matches_the_exact_reference(
    data: tuple[list[int], list[int], list[float]], window_ms: int, chunked: bool
) -> None:
    series, ts, values = data
    with small_chunks() if chunked else contextlib.nullcontext():
        windows = aggregate(np.array(series, np.int64), np.array(ts, np.int64), values, window_ms)
    check_against_reference(windows, reference(series, ts, values, window_ms))


@settings(max_examples=150, deadline=None)
@given(
    readings(),
    WINDOW_MS,
    st.lists(st.floats(0, 1), min_size=1, max_size=3).map(tuple),
)
def test_quantiles_are_exact_within_each_window(
    data: tuple[list[int], list[int], list[float]], window_ms: int, levels: tuple[float, ...]
) -> None:
    series, ts, values = data
    windows = aggregate(
        np.array(series, np.int64), np.array(ts, np.int64), values, window_ms, quantiles=levels
    )
    assert windows.quantiles.shape == (len(windows), len(levels))
    check_against_reference(windows, reference(series, ts, values, window_ms), levels)


def test_empty_input_gives_no_windows() -> None:
    windows = aggregate(np.array([], np.int64), np.array([], np.int64), np.array([]), 60_000)
    assert len(windows) == 0
    assert windows.window_ms == 60_000


def test_one_reading_is_its_own_window() -> None:
    windows = aggregate([7], [1_700_000_123_456], [21.5], 60_000)
    assert len(windows) == 1
    assert windows.series[0] == 7
    assert windows.window_start[0] == 1_700_000_100_000
    assert windows.count[0] == 1
    assert windows.mean[0] == windows.min[0] == windows.first[0] == windows.last[0] == 21.5
    assert windows.std[0] == 0.0
    assert windows.first_ts[0] == windows.last_ts[0] == 1_700_000_123_456


def test_all_nan_window_has_nan_statistics_and_counts_the_nans() -> None:
    windows = aggregate([1, 1, 2], [0, 10, 20], [math.nan, math.nan, 3.0], 1_000)
    assert windows.count.tolist() == [0, 1]
    assert windows.nan_count.tolist() == [2, 0]
    for name in ("sum", "min", "max", "mean", "std", "first", "last"):
        assert math.isnan(getattr(windows, name)[0]), name
    assert (windows.first_ts[0], windows.last_ts[0]) == (0, 10)
    assert windows.mean[1] == 3.0


def test_readings_on_a_window_edge_start_the_next_window() -> None:
    windows = aggregate([0, 0, 0], [59_999, 60_000, -60_000], [1.0, 2.0, 3.0], 60_000)
    assert windows.window_start.tolist() == [-60_000, 0, 60_000]
    assert windows.count.tolist() == [1, 1, 1]
    assert windows.first.tolist() == [3.0, 1.0, 2.0]


def test_no_catastrophic_cancellation_with_a_huge_offset() -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 1e-3, 10_000)
    values = 1e12 + noise
    windows = aggregate(np.zeros(10_000, np.int64), np.arange(10_000), values, 86_400_000)
    exact = [Fraction(x) for x in values]
    mean = sum(exact, Fraction(0)) / len(exact)
    std = _sqrt(sum(((x - mean) ** 2 for x in exact), Fraction(0)) / len(exact))
    assert abs(windows.std[0] - std) <= 1e-9 * std
    assert abs(windows.mean[0] - float(mean)) <= 1e-9 * float(mean)


def test_extreme_magnitudes_neither_overflow_nor_underflow() -> None:
    big = aggregate([0, 0], [0, 1], [1e308, -1e308], 1_000)
    assert big.std[0] == 1e308
    assert big.mean[0] == 0.0
    tiny = aggregate([0, 0], [0, 1], [1e-310, 3e-310], 1_000)
    assert tiny.std[0] == pytest.approx(1e-310, rel=1e-9)


def test_quantiles_between_values_at_both_ends_of_the_float_range_are_finite() -> None:
    largest = float(np.finfo(np.float64).max)
    windows = aggregate([0, 0], [0, 0], [1e300, -largest], 1, quantiles=(0.0, 0.5, 1.0))
    low, middle, high = windows.quantiles[0]
    assert (low, high) == (-largest, 1e300)  # not NaN from inf * 0
    assert middle == pytest.approx((1e300 - largest) / 2, rel=1e-12)


def test_order_of_input_does_not_change_the_result() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    series = rng.integers(0, 50, n)
    ts = rng.permutation(n).astype(np.int64) * 997
    values = rng.normal(size=n)
    a = aggregate(series, ts, values, 60_000)
    order = rng.permutation(n)
    b = aggregate(series[order], ts[order], values[order], 60_000)
    for name, column in a.columns().items():
        if name in ("mean", "mean_error", "std", "sum"):
            np.testing.assert_allclose(column, getattr(b, name), rtol=1e-12, atol=1e-15)
        else:
            np.testing.assert_array_equal(column, getattr(b, name), err_msg=name)


def test_large_input_matches_reference_across_chunks() -> None:
    rng = np.random.default_rng(11)
    n = 150_000  # more than two chunks
    series = rng.integers(0, 3, n).tolist()
    ts = (rng.integers(0, 20, n) * 1_000).tolist()  # many timestamp ties
    values = rng.normal(100, 1, n).round(2).tolist()
    windows = aggregate(np.array(series), np.array(ts), values, 5_000)
    check_against_reference(windows, reference(series, ts, values, 5_000))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_ms": 0}, "window_ms"),
        ({"window_ms": 86_400_001}, "window_ms"),
        ({"window_ms": 1.5}, "window_ms"),
        ({"window_ms": 1000, "quantiles": (1.5,)}, "quantile"),
        ({"window_ms": 1000, "ts_ms": [1, 2]}, "equal length"),
        ({"window_ms": 1000, "ts_ms": [1.0]}, "integer"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"series": [1], "ts_ms": [1], "values": [1.0]}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        aggregate(**arguments)  # type: ignore[arg-type]


def test_an_outlier_first_value_does_not_spoil_the_std() -> None:
    rng = np.random.default_rng(8)
    values = np.concatenate([[1e9], rng.normal(0, 1, 20_000)])  # the first reading is the outlier
    windows = aggregate(np.zeros(len(values), np.int64), np.arange(len(values)), values, 86_400_000)
    exact = [Fraction(x) for x in values]
    mean = sum(exact, Fraction(0)) / len(exact)
    std = _sqrt(sum(((x - mean) ** 2 for x in exact), Fraction(0)) / len(exact))
    assert abs(windows.std[0] - std) <= 1e-9 * std
    assert abs(windows.mean[0] - float(mean)) <= 1e-12 * float(mean)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64])
def test_any_integer_dtype_works_for_series_ids(dtype: type[np.integer]) -> None:
    windows = aggregate(np.array([3, 1, 3], dtype), np.array([5, 6, 7], np.int32), [1, 2, 4], 10)
    assert windows.series.tolist() == [1, 3]
    assert windows.mean.tolist() == [2.0, 2.5]
