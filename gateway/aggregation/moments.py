"""Sum, mean and standard deviation per group from deviations around a per-group shift.

The variance comes from deviations around a value of each group (its first one), minus the square
of their sum (the shifted-data formula; Chan, Golub & LeVeque, "Algorithms for computing the sample
variance", 1983), so a large common offset (1e12 + small noise) does not cancel catastrophically and
one sweep over the readings suffices. Groups where the shift lies so far from the mean that the formula's
rounding bound, 3 n eps (1 + (mean - shift)**2 / var), exceeds `VARIANCE_ERROR_BOUND` get a second
sweep around their mean (the corrected two-pass algorithm). Groups whose magnitude is near the ends
of the float64 range are recomputed on values rescaled by a power of two (exact), so squares neither
overflow nor underflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.aggregation.grouping import CHUNK
from gateway.aggregation.window_columns import two_sum

Float64Array = NDArray[np.float64]
Int64Array = NDArray[np.int64]
IntpArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

#: the largest relative variance error the one-sweep formula may risk before a group is redone
VARIANCE_ERROR_BOUND = 1e-10
_EPS = float(np.finfo(np.float64).eps)
#: groups whose largest |value| lies outside [2**-_SCALE_LIMIT, 2**_SCALE_LIMIT] are rescaled
_SCALE_LIMIT = 480


@dataclass(frozen=True, slots=True)
class ShiftedSums:
    """Per group: a shift (a valid value of the group, 0 if none), sum(x - shift), sum((x - shift)**2)."""

    shift: Float64Array
    deviation_sum: Float64Array
    square_sum: Float64Array

    @classmethod
    def around(cls, shift: Float64Array) -> ShiftedSums:
        """Empty sums around the given per-group shift."""
        return cls(shift, np.zeros(len(shift)), np.zeros(len(shift)))

    def add(
        self, g: IntpArray, x: Float64Array, nan: BoolArray | None, only: BoolArray | None = None
    ) -> None:
        """Accumulate the readings x of groups g (NaN ones excluded; only groups in `only`)."""
        d = self.shift.take(g)
        with np.errstate(over="ignore", invalid="ignore"):
            np.subtract(x, d, out=d)
            if nan is not None:
                d[nan] = 0.0
            if only is not None:
                selected = only.take(g)
                g, d = g[selected], d[selected]
            np.add.at(self.deviation_sum, g, d)
            np.square(d, out=d)
            np.add.at(self.square_sum, g, d)


def moments(
    ids: IntpArray,
    v: Float64Array,
    nan: BoolArray | None,
    count: Int64Array,
    extremes: tuple[Float64Array, Float64Array],
    first: Float64Array,
) -> tuple[Float64Array, Float64Array, Float64Array, Float64Array]:
    """Per group sum, mean, mean rounding error and population std; `first` is a value per group."""
    with np.errstate(invalid="ignore"):
        magnitude = np.fmax(np.abs(extremes[0]), np.abs(extremes[1]))
    present = magnitude[count > 0]
    nonzero = present[present > 0]
    limit = 2.0**_SCALE_LIMIT
    shift = np.where(count > 0, first, 0.0)
    scale_exponent = None
    if nonzero.size and (nonzero.max() > limit or nonzero.min() < 1 / limit):
        _, exponent = np.frexp(np.where(magnitude > 0, magnitude, 1.0))
        scale_exponent = -exponent
        shift = np.ldexp(shift, scale_exponent)
    sums = ShiftedSums.around(shift)
    for start, g, x in _chunks(ids, v, scale_exponent):
        sums.add(g, x, None if nan is None else nan[start : start + len(g)])
    results = _finish(ids, v, nan, count, sums, scale_exponent)
    if scale_exponent is None:
        return results
    with np.errstate(over="ignore"):
        total, mean, mean_error, std = (np.ldexp(column, exponent) for column in results)
    return total, mean, mean_error, std


def _finish(
    ids: IntpArray,
    v: Float64Array,
    nan: BoolArray | None,
    count: Int64Array,
    sums: ShiftedSums,
    scale_exponent: NDArray[np.int32] | None,
) -> tuple[Float64Array, Float64Array, Float64Array, Float64Array]:
    """Moments from shifted sums; redoes the ill-conditioned groups around their mean."""
    divisor = np.maximum(count, 1)
    shift, deviation_sum, square_sum = sums.shift, sums.deviation_sum, sums.square_sum
    offset = deviation_sum / divisor
    m2 = square_sum - deviation_sum * offset
    with np.errstate(divide="ignore", invalid="ignore"):
        condition = offset * offset * divisor / m2
    redo = (condition > 1) & (3 * divisor * _EPS * (1 + condition) > VARIANCE_ERROR_BOUND)
    if redo.any():
        again = ShiftedSums.around(np.where(redo, shift + offset, shift))
        for start, g, x in _chunks(ids, v, scale_exponent):
            again.add(g, x, None if nan is None else nan[start : start + len(g)], redo)
        shift = again.shift
        deviation_sum = np.where(redo, again.deviation_sum, deviation_sum)
        square_sum = np.where(redo, again.square_sum, square_sum)
        offset = deviation_sum / divisor
        m2 = square_sum - deviation_sum * offset
    mean, mean_error = two_sum(shift, offset)
    std = np.sqrt(np.maximum(m2, 0.0) / divisor)
    return shift * count + deviation_sum, mean, mean_error, std


def _chunks(
    ids: IntpArray, v: Float64Array, scale_exponent: NDArray[np.int32] | None
) -> Iterator[tuple[int, IntpArray, Float64Array]]:
    """(start, group ids, values) per chunk, values times 2**scale_exponent[group] when given."""
    for start in range(0, len(v), CHUNK):
        g, x = ids[start : start + CHUNK], v[start : start + CHUNK]
        if scale_exponent is not None:
            x = np.ldexp(x, scale_exponent.take(g))
        yield start, g, x
