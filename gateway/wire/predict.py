"""Predictors of a quantised series' value steps (format version 3, readings key 10).

The column of a series carries residuals of its steps d[0..m-1] (d[j] = q[j+1] - q[j]):

* predictor 0, previous value: r[j] = d[j] (the steps themselves, as in versions 1 and 2);
* predictor 1, linear extrapolation (delta of delta): r[j] = d[j] - d[j-1];
* predictor p >= 2, the same time one period earlier: r[j] = d[j] - d[j-p], with p the readings
  per day (24 for hourly weather: irradiance, temperature and humidity follow the sun);

* predictor -1 (version 5), the level: r[j] = d[0] + ... + d[j] = q[j+1] - q[first], chosen only
  where a context-modelled column codes it smaller (`steps`; wind that dwells at a few levels);
* predictor [M, a] (version 5), circular steps: the series' values lie in M consecutive integers,
  its first value a above the lowest, and r[j] = d[j] wrapped into -(M div 2) .. M - M div 2 - 1
  (a vane at 10 degrees reads 0..36: 360 -> 10 degrees is the step -35, or 2 round that circle);

where d[j] for j < 0 counts as 0. Each inverse is a running sum (over every p-th step), so
decoding needs no per-value loop. Fractional autoregressive predictors (Sprintz's FIRE) would
need one: d[j] = r[j] + round(a * d[j-1]) cannot be unrolled into sums; on the benchmark series
the measured gain of a in -0.3..0.2 was at best 2 % (docs/wire-format.md, section 8).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.wire import intcol, varint
from kernel.errors import MalformedBatch

IntArray = npt.NDArray[np.int64]

PREVIOUS, LINEAR = 0, 1
#: version 5: the residual is the level itself, q[j+1] - q[first] (the running sum of the steps)
LEVEL = -1
#: a larger period gains nothing and would let a hostile batch ask for absurd reshapes
MAX_PERIOD = 1 << 16
DAY_MS = 86_400_000
#: the largest circle of predictor [M, a]: a compass at 0.01 degree (36,000 values) fits
MAX_MODULUS = 1 << 16
#: columns of this many steps or more are also measured with zstd
_ZSTD_FROM = 2048


def residuals(steps: IntArray, predictor: int) -> IntArray:
    """The residuals of one series' steps under `predictor`."""
    if predictor == PREVIOUS:
        return steps
    if predictor == LEVEL:
        level: IntArray = np.cumsum(steps)  # wraps modulo 2^64 as the format says
        return level
    r = steps.copy()
    r[predictor:] -= steps[:-predictor]
    return r


def circle_of(steps: IntArray) -> tuple[int, int]:
    """The circle (M, a) of a series' steps: its values span M integers, the first a above the lowest."""
    level = np.cumsum(steps)
    low = min(int(level.min(initial=0)), 0)
    return max(int(level.max(initial=0)), 0) - low + 1, -low


def circular_residuals(steps: IntArray, modulus: int) -> IntArray:
    """The steps wrapped the shortest way round a circle of `modulus` integers."""
    half = modulus // 2
    wrapped: IntArray = (steps + half) % modulus - half
    return wrapped


def circular_steps(residual: IntArray, modulus: int, start: int) -> IntArray:
    """Inverse of `circular_residuals` for a series whose first value is `start` above its lowest."""
    if not 2 <= modulus <= MAX_MODULUS or not 0 <= start < modulus:
        raise MalformedBatch(f"circle [{modulus}, {start}] needs 2 <= M <= {MAX_MODULUS} and 0 <= a < M")
    half = modulus // 2
    if residual.size and (int(residual.min()) < -half or int(residual.max()) >= modulus - half):
        raise MalformedBatch(f"a circular residual lies outside -{half}..{modulus - half - 1}")
    # exact: at most MAX_VALUES (< 2^20) residuals of at most 2^15 each sum to less than 2^35
    level = (start + np.cumsum(residual)) % modulus - start
    steps: IntArray = np.diff(level, prepend=np.int64(0))
    return steps


def steps_of(residual: IntArray, predictor: int) -> IntArray:
    """Inverse of `residuals`: running sums over every predictor-th residual."""
    if predictor == PREVIOUS:
        return residual
    if predictor == LEVEL:
        steps: IntArray = np.diff(residual, prepend=np.int64(0))
        return steps
    if not 1 <= predictor <= MAX_PERIOD:
        raise MalformedBatch(f"predictor {predictor} is not -1, 0, 1 or a period of 2..{MAX_PERIOD}")
    m = residual.size
    padded = np.zeros(-(-m // predictor) * predictor, dtype=np.int64)
    padded[:m] = residual
    summed: IntArray = np.cumsum(padded.reshape(-1, predictor), axis=0).reshape(-1)[:m]
    return summed


def choose(steps: IntArray, interval_ms: float) -> int:
    """The predictor whose residuals are estimated smallest after coding (zstd or Huffman)."""
    candidates = [PREVIOUS, LINEAR]
    period = day_period(interval_ms)
    if 2 <= period <= steps.size // 2:
        candidates.append(period)
    if steps.size < 16:
        return PREVIOUS
    # a predictor whose residuals are not smaller in magnitude than the steps is not estimated
    # (noisy series: of 200 NEON series, the first four benchmark batches of each file, at most 19
    # need an estimate)
    magnitude = int(np.abs(steps).sum())
    candidates = [PREVIOUS] + [p for p in candidates[1:] if np.abs(residuals(steps, p)).sum() < magnitude]
    if len(candidates) == 1:
        return PREVIOUS
    sizes = [estimated_size(residuals(steps, p)) for p in candidates]
    best = int(np.argmin(sizes))
    # another predictor must pay for naming it (key 10) and for the noise of a small estimate
    return candidates[best] if sizes[best] + max(8, sizes[0] // 50) < sizes[0] else PREVIOUS


def day_period(interval_ms: float) -> int:
    """Readings per day at `interval_ms` (2..MAX_PERIOD), or 1 when there is no such period."""
    if interval_ms <= 0:
        return 1
    period = round(DAY_MS / interval_ms)
    return period if 2 <= period <= MAX_PERIOD else 1


def estimated_size(values: IntArray) -> float:
    """About the bytes of the values after zstd or Huffman: the smaller of their order-0 entropy
    (values beyond 255 at 2 log2 bits each) and zstd (level 3) over byte planes, which also sees
    repeats; the entropy alone is taken for short columns, where zstd's own overhead would blur
    the comparison (and it is four times cheaper)."""
    z = varint.zigzag(values)
    small = z < 256
    counts = np.bincount(z[small].astype(np.int64), minlength=1).astype(np.float64)
    used = counts[counts > 0]
    bits = float(-(used * np.log2(used / values.size)).sum())
    bits += float((2 * np.log2(z[~small].astype(np.float64)) + 8).sum())
    if values.size < _ZSTD_FROM:
        return bits / 8
    return min(bits / 8, intcol.quick_size(intcol.pack_planes(values)))
