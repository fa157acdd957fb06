"""`merge`: combine partial windows exactly as if their readings had been aggregated together."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.aggregation.window_columns import Windows, concat, two_sum

Float64Array = NDArray[np.float64]


def merge(a: Windows, b: Windows) -> Windows:
    """Windows of the union of the readings behind a and b; b's readings count as the later ones.

    Count, NaN count, min, max, sum and first/last are exact; mean and std use Chan et al.'s
    pairwise update on the double-length mean, so they agree with `aggregate` on the union to a
    few float64 ulps. On timestamp ties `first` comes from a and `last` from b, as `aggregate`
    over a's readings followed by b's would pick them. Quantiles cannot be merged: ValueError.
    """
    if a.window_ms != b.window_ms:
        raise ValueError(f"cannot merge {a.window_ms} ms windows with {b.window_ms} ms windows")
    if a.quantile_levels or b.quantile_levels:
        raise ValueError("exact quantiles cannot be merged; aggregate the readings instead")
    _require_sorted_unique(a)
    _require_sorted_unique(b)
    both = concat([a, b], a.window_ms)
    rows = both.take(np.lexsort((both.window_start, both.series)))
    same = (rows.series[1:] == rows.series[:-1]) & (rows.window_start[1:] == rows.window_start[:-1])
    earlier = np.flatnonzero(same)
    if earlier.size == 0:
        return rows
    combined = combine(rows.take(earlier), rows.take(earlier + 1))
    columns: dict[str, Any] = {name: column.copy() for name, column in rows.columns().items()}
    for name, column in combined.columns().items():
        columns[name][earlier] = column
    keep = np.ones(len(rows), np.bool_)
    keep[earlier + 1] = False
    return Windows(a.window_ms, **columns).take(keep)


def _require_sorted_unique(windows: Windows) -> None:
    s, w = windows.series, windows.window_start
    ascending = (s[1:] > s[:-1]) | ((s[1:] == s[:-1]) & (w[1:] > w[:-1]))
    if not ascending.all():
        raise ValueError("windows must be sorted by (series, window_start) without duplicates")


def combine(x: Windows, y: Windows) -> Windows:
    """Row-by-row combination of windows with the same keys; y's readings count as the later ones."""
    count = x.count + y.count
    x_valid, y_valid = x.count > 0, y.count > 0
    mean, mean_error, std = _combined_moments(x, y)
    take_first_x = (x_valid & ~y_valid) | ((x_valid == y_valid) & (x.first_ts <= y.first_ts))
    take_last_y = (y_valid & ~x_valid) | ((x_valid == y_valid) & (y.last_ts >= x.last_ts))
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.where(x_valid, x.sum, 0.0) + np.where(y_valid, y.sum, 0.0)
    valid = count > 0
    return Windows(
        x.window_ms,
        series=x.series,
        window_start=x.window_start,
        rev=np.maximum(x.rev, y.rev),
        count=count,
        nan_count=x.nan_count + y.nan_count,
        sum=np.where(valid, total, np.nan),
        min=np.fmin(x.min, y.min),
        max=np.fmax(x.max, y.max),
        mean=mean,
        mean_error=mean_error,
        std=std,
        first=np.where(take_first_x, x.first, y.first),
        last=np.where(take_last_y, y.last, x.last),
        first_ts=np.where(take_first_x, x.first_ts, y.first_ts),
        last_ts=np.where(take_last_y, y.last_ts, x.last_ts),
    )


def _combined_moments(x: Windows, y: Windows) -> tuple[Float64Array, Float64Array, Float64Array]:
    """Mean, its error and std of two row sets, computed at a per-row power-of-two scale."""
    with np.errstate(invalid="ignore"):
        magnitude = np.fmax(np.fmax(np.abs(x.min), np.abs(x.max)), np.fmax(np.abs(y.min), np.abs(y.max)))
    finite = np.isfinite(magnitude) & (magnitude > 0)
    _, exponent = np.frexp(np.where(finite, magnitude, 1.0))
    n_x, n_y = x.count.astype(np.float64), y.count.astype(np.float64)
    n = np.maximum(n_x + n_y, 1.0)
    mx, ex, sx = (np.ldexp(_valid_or_zero(c, x.count), -exponent) for c in (x.mean, x.mean_error, x.std))
    my, ey, sy = (np.ldexp(_valid_or_zero(c, y.count), -exponent) for c in (y.mean, y.mean_error, y.std))
    with np.errstate(invalid="ignore", over="ignore"):
        delta = (my - mx) + (ey - ex)
        high, low = mx, ex + delta * (n_y / n)
        mean, mean_error = two_sum(high, low)
        m2 = n_x * sx * sx + n_y * sy * sy + delta * delta * (n_x * n_y / n)
        std = np.sqrt(m2 / n)
        # a side without valid values adds nothing: keep the other side's double-length mean as is
        only_y = n_x == 0
        return (
            np.where(only_y, y.mean, np.ldexp(mean, exponent)),
            np.where(only_y, np.where(n_y > 0, y.mean_error, 0.0), np.ldexp(mean_error, exponent)),
            np.where(only_y, y.std, np.ldexp(std, exponent)),
        )


def _valid_or_zero(column: Float64Array, count: NDArray[Any]) -> Float64Array:
    return np.where(count > 0, column, 0.0)
