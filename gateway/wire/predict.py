"""Predictors of a quantised series' value steps (format version 3, readings key 10).

The column of a series carries residuals of its steps d[0..m-1] (d[j] = q[j+1] - q[j]):

* predictor 0, previous value: r[j] = d[j] (the steps themselves, as in versions 1 and 2);
* predictor 1, linear extrapolation (delta of delta): r[j] = d[j] - d[j-1];
* predictor p >= 2, the same time one period earlier: r[j] = d[j] - d[j-p], with p the readings
  per day (24 for hourly weather: irradiance, temperature and humidity follow the sun);

where d[j] for j < 0 counts as 0. Each inverse is a running sum (over every p-th step), so
decoding needs no per-value loop. Fractional autoregressive predictors (Sprintz's FIRE) would
need one: d[j] = r[j] + round(a * d[j-1]) cannot be unrolled into sums; on the benchmark series
the measured gain of a in -0.3..0.2 was at best 2 % (docs/wire-format.md, section 8).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.errors import MalformedBatch
from gateway.wire import intcol

IntArray = npt.NDArray[np.int64]

PREVIOUS, LINEAR = 0, 1
#: a larger period gains nothing and would let a hostile batch ask for absurd reshapes
MAX_PERIOD = 1 << 16
DAY_MS = 86_400_000


def residuals(steps: IntArray, predictor: int) -> IntArray:
    """The residuals of one series' steps under `predictor`."""
    if predictor == PREVIOUS:
        return steps
    r = steps.copy()
    r[predictor:] -= steps[:-predictor]
    return r


def steps_of(residual: IntArray, predictor: int) -> IntArray:
    """Inverse of `residuals`: running sums over every predictor-th residual."""
    if predictor == PREVIOUS:
        return residual
    if not 1 <= predictor <= MAX_PERIOD:
        raise MalformedBatch(f"predictor {predictor} is not 0, 1 or a period of 2..{MAX_PERIOD}")
    m = residual.size
    padded = np.zeros(-(-m // predictor) * predictor, dtype=np.int64)
    padded[:m] = residual
    summed: IntArray = np.cumsum(padded.reshape(-1, predictor), axis=0).reshape(-1)[:m]
    return summed


def choose(steps: IntArray, interval_ms: float) -> int:
    """The predictor whose residuals are estimated smallest after coding (zstd or Huffman)."""
    candidates = [PREVIOUS, LINEAR]
    if interval_ms > 0:
        period = round(DAY_MS / interval_ms)
        if 2 <= period <= min(MAX_PERIOD, steps.size // 2):
            candidates.append(period)
    if steps.size < 16:
        return PREVIOUS
    sizes = [estimated_size(residuals(steps, p)) for p in candidates]
    return candidates[int(np.argmin(sizes))]


def estimated_size(values: IntArray) -> int:
    """Bytes of zstd (level 3) over the byte planes: its order-0 stage sees what Huffman would."""
    return intcol.quick_size(intcol.pack_planes(values))
