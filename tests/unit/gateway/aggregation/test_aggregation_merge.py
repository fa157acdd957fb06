"""merge(a, b) equals aggregate() over the union of the readings behind a and b."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.aggregation import Windows, aggregate, merge

EPS = float(np.finfo(np.float64).eps)

VALUES = st.one_of(
    # sums of values near the float64 limit may round to infinity in one order and not in another
    st.floats(-1e300, 1e300),
    st.floats(-1e3, 1e3),
    st.floats(-1e-3, 1e-3).map(lambda x: 1e12 + x),  # a large mean with a tiny spread
    st.just(math.nan),
)
READING = st.tuples(st.integers(0, 3), st.integers(-3_000, 3_000), VALUES)


def _columns(rows: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([r[0] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.float64),
    )


def assert_same_windows(got: Windows, want: Windows) -> None:
    """Exact for counts, extremes and first/last; mean and std within float64 rounding."""
    for name in ("series", "window_start", "count", "nan_count", "first_ts", "last_ts"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    for name in ("min", "max", "first", "last"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    with np.errstate(all="ignore"):
        n = np.maximum(want.count, 1)
        magnitude = np.fmax(np.abs(want.min), np.abs(want.max))
        spread = want.max - want.min
        checks = {
            "mean": (got.mean + got.mean_error, want.mean + want.mean_error, magnitude),
            "std": (got.std, want.std, spread),
            "sum": (got.sum, want.sum, n * magnitude),
        }
        for name, (a, b, scale) in checks.items():
            slack = 1e-9 * np.abs(b) + 16 * n * EPS * np.nan_to_num(scale, nan=0.0) + 1e-300
            close = (np.abs(a - b) <= slack) | (np.isnan(a) & np.isnan(b)) | (a == b)
            assert close.all(), (name, a[~close], b[~close])


@settings(max_examples=250, deadline=None)
@given(
    st.lists(st.lists(READING, max_size=20), min_size=2, max_size=4),
    st.sampled_from([1, 100, 1_000, 86_400_000]),
)
def test_merging_partials_equals_aggregating_the_union(
    parts: list[list[tuple[int, int, float]]], window_ms: int
) -> None:
    merged = aggregate(*_columns(parts[0]), window_ms)
    for part in parts[1:]:
        merged = merge(merged, aggregate(*_columns(part), window_ms))
    union = aggregate(*_columns([r for part in parts for r in part]), window_ms)
    assert_same_windows(merged, union)


def test_merge_keeps_the_mean_exact_for_a_large_offset() -> None:
    rng = np.random.default_rng(2)
    values = 1e12 + rng.normal(0, 1e-4, 600)
    zeros, ts = np.zeros(600, np.int64), np.arange(600, dtype=np.int64)
    merged = aggregate(zeros[:1], ts[:1], values[:1], 1_000)
    for start in range(1, 600, 7):  # many small late batches, like revisions
        chunk = slice(start, start + 7)
        merged = merge(merged, aggregate(zeros[chunk], ts[chunk], values[chunk], 1_000))
    whole = aggregate(zeros, ts, values, 1_000)
    assert merged.std[0] == pytest.approx(whole.std[0], rel=1e-9)
    assert merged.mean[0] == whole.mean[0]


def test_merge_handles_extreme_magnitudes() -> None:
    for values in ([1e308, -1e308, 5e307], [3e-310, 1e-310, 2e-310]):
        whole = aggregate([0, 0, 0], [0, 1, 2], values, 1_000)
        merged = merge(aggregate([0], [0], values[:1], 1_000), aggregate([0, 0], [1, 2], values[1:], 1_000))
        assert merged.mean[0] == pytest.approx(whole.mean[0], rel=1e-9)
        assert merged.std[0] == pytest.approx(whole.std[0], rel=1e-9)
        assert math.isfinite(merged.std[0])


def test_on_timestamp_ties_first_comes_from_a_and_last_from_b() -> None:
    a = aggregate([1, 1], [10, 20], [1.0, 2.0], 1_000)
    b = aggregate([1, 1], [10, 20], [3.0, 4.0], 1_000)
    merged = merge(a, b)
    assert (merged.first[0], merged.last[0]) == (1.0, 4.0)


def test_valid_values_win_over_nan_readings_for_first_and_last() -> None:
    a = aggregate([1], [5], [math.nan], 1_000)
    b = aggregate([1], [10], [2.0], 1_000)
    for merged in (merge(a, b), merge(b, a)):
        assert (merged.first[0], merged.last[0]) == (2.0, 2.0)
        assert (merged.first_ts[0], merged.last_ts[0]) == (10, 10)
        assert (merged.count[0], merged.nan_count[0]) == (1, 1)


def test_merge_with_empty_windows_changes_nothing() -> None:
    a = aggregate([1, 2], [10, 2_000], [1.0, 2.0], 1_000)
    for merged in (merge(a, Windows.empty(1_000)), merge(Windows.empty(1_000), a)):
        assert_same_windows(merged, a)


def test_merge_rejects_different_window_lengths_and_quantiles() -> None:
    a = aggregate([1], [10], [1.0], 1_000)
    with pytest.raises(ValueError, match="1000 ms windows with 60000 ms"):
        merge(a, aggregate([1], [10], [1.0], 60_000))
    with pytest.raises(ValueError, match="quantiles"):
        merge(a, aggregate([1], [10], [1.0], 1_000, quantiles=(0.5,)))


def test_merge_rejects_unsorted_windows() -> None:
    a = aggregate([1, 2], [10, 10], [1.0, 2.0], 1_000)
    backwards = a.take(np.array([1, 0]))
    with pytest.raises(ValueError, match="sorted"):
        merge(backwards, a)
