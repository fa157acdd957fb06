"""`aggregate`: windowed statistics per series over whole columns, without sorting the readings.

A first sweep over the readings, in cache-sized chunks, computes the group ids and scatters counts,
extremes and first/last keys (`np.add.at`, `np.minimum.at`...) into one slot per (series, window)
group; a second sweep sums the deviations from each group's first value (see `moments`). Only exact
quantiles need a sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.aggregation.grouping import CHUNK, Grouping
from gateway.aggregation.moments import moments
from gateway.aggregation.quantiles import window_quantiles
from gateway.aggregation.window_columns import Windows, check_window_ms

Float64Array = NDArray[np.float64]
Int64Array = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: first/last keys are (time offset << index bits) | reading index, below 2**62; offsets within a
#: window are below 2**27 ms (> one day), so at most 2**35 readings per call
_KEY_BITS = 62
_OFFSET_BITS = 27
_INDEX_BITS = _KEY_BITS - _OFFSET_BITS
#: added to (min key) / subtracted from (max key) for NaN readings: any valid reading wins
_NAN_PENALTY = np.int64(1 << _KEY_BITS)


@dataclass(frozen=True, slots=True)
class _Extremes:
    """Per group: valid count, NaN count, min, max and the first/last (time, index) keys."""

    count: Int64Array
    nan_count: Int64Array
    min: Float64Array
    max: Float64Array
    first_key: Int64Array
    last_key: Int64Array


def aggregate(
    series: NDArray[np.integer[Any]] | Sequence[int],
    ts_ms: NDArray[np.integer[Any]] | Sequence[int],
    values: NDArray[np.floating[Any]] | Sequence[float],
    window_ms: int,
    *,
    quantiles: Sequence[float] = (),
) -> Windows:
    """Statistics of every (series, epoch-aligned window) holding a reading; inputs in any order."""
    window_ms = check_window_ms(window_ms)
    levels = _check_levels(quantiles)
    s, t, v = _check_columns(series, ts_ms, values)
    if len(t) == 0:
        return Windows.empty(window_ms, levels)
    if len(t) >= 1 << _INDEX_BITS:
        raise ValueError(f"aggregate at most {1 << _INDEX_BITS} readings per call")
    grouping = Grouping.of(s, t, window_ms)
    keys = _KeyPlan.of(len(t), grouping.ts_range, window_ms)
    ext, nan_mask = _sweep(grouping, s, t, v, keys)
    rows = grouping.ordered((ext.count > 0) | (ext.nan_count > 0))
    first_of_groups = v[np.where(ext.count > 0, ext.first_key & keys.index_mask, 0)]
    extremes = (ext.min, ext.max)
    total, mean, mean_error, std = moments(grouping.ids, v, nan_mask, ext.count, extremes, first_of_groups)
    valid = ext.count[rows] > 0
    first_at = ext.first_key[rows] & keys.index_mask
    last_at = ext.last_key[rows] & keys.index_mask
    series_of_rows, window_of_rows = grouping.keys(rows)
    count = ext.count[rows]
    return Windows(
        window_ms,
        series=series_of_rows,
        window_start=window_of_rows * np.int64(window_ms),
        rev=np.zeros(len(rows), np.int32),
        count=count,
        nan_count=ext.nan_count[rows],
        sum=np.where(valid, total[rows], np.nan),
        min=ext.min[rows],
        max=ext.max[rows],
        mean=np.where(valid, mean[rows], np.nan),
        mean_error=np.where(valid, mean_error[rows], 0.0),
        std=np.where(valid, std[rows], np.nan),
        first=v[first_at],
        last=v[last_at],
        first_ts=t[first_at],
        last_ts=t[last_at],
        quantile_levels=levels,
        quantiles=window_quantiles(grouping.ids, v, nan_mask, rows, levels),
    )


def _nan_mask(v: Float64Array) -> BoolArray | None:
    """Which values are NaN, or None when none is (found by one fast sum in the common case)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isnan(np.sum(v)):
            return None
    nan = np.isnan(v)
    return nan if nan.any() else None


def _check_columns(
    series: Any, ts_ms: Any, values: Any
) -> tuple[NDArray[np.integer[Any]], Int64Array, Float64Array]:
    """The three inputs as 1-D numpy arrays of equal length (copies only when the dtype differs)."""
    s = np.asarray(series)
    t = np.asarray(ts_ms)
    if s.size == 0:
        s = s.astype(np.int64)
    if t.size == 0:
        t = t.astype(np.int64)
    if s.dtype.kind not in "iu" or t.dtype.kind not in "iu":
        raise ValueError("series and ts_ms must be integer arrays")
    for name, column in (("series ids", s), ("timestamps", t)):
        if column.dtype == np.uint64 and column.size and int(column.max()) > 2**63 - 1:
            raise ValueError(f"{name} must fit in int64")
    if s.dtype == np.uint64:
        s = s.astype(np.int64)
    v = np.asarray(values, dtype=np.float64)
    t = t.astype(np.int64, copy=False)
    if not s.ndim == t.ndim == v.ndim == 1 or not len(s) == len(t) == len(v):
        raise ValueError(
            f"series, ts_ms and values must be 1-D and of equal length, got shapes "
            f"{s.shape}, {t.shape}, {v.shape}"
        )
    return s, t, v


def _check_levels(quantiles: Sequence[float]) -> tuple[float, ...]:
    levels = tuple(float(q) for q in quantiles)
    if any(not 0.0 <= q <= 1.0 for q in levels):
        raise ValueError(f"quantile levels must lie within [0, 1], got {levels}")
    return levels


@dataclass(frozen=True, slots=True)
class _KeyPlan:
    """How first/last keys are built: (ts - base) or (ts mod window), shifted past the index bits."""

    base: int | None
    window_ms: int
    index_bits: int

    @classmethod
    def of(cls, n: int, ts_range: tuple[int, int], window_ms: int) -> _KeyPlan:
        index_bits = max(1, (n - 1).bit_length())
        if ts_range[1] - ts_range[0] < 1 << (_KEY_BITS - index_bits):  # cheaper than a remainder
            return cls(ts_range[0], window_ms, index_bits)
        return cls(None, window_ms, _INDEX_BITS)

    @property
    def index_mask(self) -> np.int64:
        return np.int64((1 << self.index_bits) - 1)

    def keys(self, t: Int64Array, start: int) -> Int64Array:
        """Keys of the readings t, which start at index `start` of the input."""
        key = np.remainder(t, self.window_ms) if self.base is None else t - self.base
        np.left_shift(key, self.index_bits, out=key)
        np.add(key, np.arange(start, start + len(key), dtype=np.int64), out=key)
        return key


def _sweep(
    grouping: Grouping, s: NDArray[np.integer[Any]], t: Int64Array, v: Float64Array, keys: _KeyPlan
) -> tuple[_Extremes, BoolArray | None]:
    """Counts, min, max and first/last keys of every group in one sweep; the NaN mask.

    The sweep also computes the dense group ids, so every chunk is read from memory once.
    """
    size = grouping.size
    total, nan_count = np.zeros(size, np.int64), np.zeros(size, np.int64)
    ext = _Extremes(
        count=total,
        nan_count=nan_count,
        min=np.full(size, np.inf),
        max=np.full(size, -np.inf),
        first_key=np.full(size, np.iinfo(np.int64).max),
        last_key=np.full(size, np.iinfo(np.int64).min),
    )
    seen_nan = False
    for start in range(0, len(t), CHUNK):
        chunk = slice(start, start + CHUNK)
        g, x = grouping.chunk_ids(s, t, chunk), v[chunk]
        np.add.at(total, g, 1)
        key = keys.keys(t[chunk], start)
        nan = _nan_mask(x)
        if nan is None:
            np.minimum.at(ext.min, g, x)
            np.maximum.at(ext.max, g, x)
            np.minimum.at(ext.first_key, g, key)
            np.maximum.at(ext.last_key, g, key)
        else:
            seen_nan = True
            np.add.at(nan_count, g[nan], 1)
            np.fmin.at(ext.min, g, x)
            np.fmax.at(ext.max, g, x)
            penalty = nan * _NAN_PENALTY
            np.minimum.at(ext.first_key, g, key + penalty)
            np.maximum.at(ext.last_key, g, key - penalty)
    np.subtract(total, nan_count, out=total)  # now the count of valid values
    empty = total == 0
    ext.min[empty] = np.nan
    ext.max[empty] = np.nan
    return ext, np.isnan(v) if seen_nan else None
