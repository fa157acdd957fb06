"""Exact per-window quantiles: the one statistic that needs the readings sorted."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Float64Array = NDArray[np.float64]


def window_quantiles(
    ids: NDArray[np.intp],
    values: Float64Array,
    nan: NDArray[np.bool_] | None,
    rows: NDArray[np.intp],
    levels: tuple[float, ...],
) -> Float64Array:
    """Quantiles (linear interpolation, numpy's default) of the valid values of the groups in rows.

    Returns an array of shape (len(rows), len(levels)); NaN where a group holds no valid value.
    """
    result = np.full((len(rows), len(levels)), np.nan)
    if not levels or len(rows) == 0:
        return result
    if nan is not None:
        ids, values = ids[~nan], values[~nan]
    order = np.lexsort((values, ids))
    sorted_values = values[order]
    all_counts = np.bincount(ids, minlength=int(rows.max()) + 1)
    counts = all_counts[rows]
    starts = (np.cumsum(all_counts) - all_counts)[rows]
    has_values = counts > 0
    for column, level in enumerate(levels):
        result[has_values, column] = _interpolate(
            sorted_values, starts[has_values], counts[has_values], level
        )
    return result


def _interpolate(
    sorted_values: Float64Array, starts: NDArray[Any], counts: NDArray[Any], level: float
) -> Float64Array:
    """The level-quantile of each run sorted_values[start:start+count] (count > 0)."""
    position = level * (counts - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, counts - 1)
    fraction = position - below
    low = sorted_values[starts + below]
    high = sorted_values[starts + above]
    # numpy's lerp: exact at both ends and monotone in the fraction
    with np.errstate(over="ignore", invalid="ignore"):
        span = high - low
        result: Float64Array = np.where(fraction >= 0.5, high - span * (1 - fraction), low + span * fraction)
    # finite ends whose difference overflows have opposite signs near the ends of the float range:
    # there the weighted sum cannot overflow
    wide = np.isinf(span) & np.isfinite(low) & np.isfinite(high)
    if wide.any():
        f = fraction[wide]
        result[wide] = low[wide] * (1 - f) + high[wide] * f
    return result
