"""How a series' declared resolutions map to integers on the wire and back."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kernel.errors import MalformedBatch

#: a decimal scale k means value = q / 10**k; 10**22 is the largest power of ten a float64 holds exactly
MAX_DECIMAL_EXPONENT = 22
#: quantised integers beyond 2**53 would no longer divide back exactly
MAX_EXACT_INT = 2**53

Scale = int | float | None


def scale_of(resolution: float | None) -> Scale:
    """The wire form of a resolution: decimal exponent k for 10**-k, the step itself otherwise."""
    if resolution is None:
        return None
    k = round(-math.log10(resolution))
    if abs(k) <= MAX_DECIMAL_EXPONENT and float(f"1e{-k}") == resolution:
        return k
    return float(resolution)


def resolution_of(scale: object) -> float | None:
    """Inverse of `scale_of` for a decoded series table entry; MalformedBatch when invalid."""
    if scale is None:
        return None
    if isinstance(scale, bool):
        raise MalformedBatch("series scale must be null, an integer or a float")
    if isinstance(scale, int):
        if abs(scale) > MAX_DECIMAL_EXPONENT:
            raise MalformedBatch(f"decimal scale {scale} out of range")
        return float(f"1e{-scale}")
    if isinstance(scale, float) and math.isfinite(scale) and scale > 0:
        return scale
    raise MalformedBatch(f"invalid series scale {scale!r}")


def quantise(
    values: npt.NDArray[np.float64], scale: int | float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Nearest integers (ties to even) at `scale` and a mask of values that cannot be quantised."""
    with np.errstate(invalid="ignore", over="ignore"):
        if isinstance(scale, int):
            scaled = values * 10.0**scale if scale >= 0 else values / 10.0**-scale
        else:
            scaled = values / scale
        rounded = np.rint(scaled)
        bad = ~(np.abs(rounded) <= MAX_EXACT_INT)  # NaN compares false, so it is caught too
    return np.where(bad, 0.0, rounded).astype(np.int64), bad


def dequantise(q: npt.NDArray[np.int64], scale: int | float) -> npt.NDArray[np.float64]:
    """Values from quantised integers: dividing by 10**k makes 1234 at k=2 exactly float('12.34')."""
    f = q.astype(np.float64)
    if isinstance(scale, int):
        return f / 10.0**scale if scale >= 0 else f * 10.0**-scale
    return f * scale
