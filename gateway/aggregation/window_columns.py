"""`Windows`: per-(series, window) statistics as equal-length numpy columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

Int64Array = NDArray[np.int64]
Int32Array = NDArray[np.int32]
Float64Array = NDArray[np.float64]

#: window lengths the aggregation accepts: 1 ms (for tests) to one day
MAX_WINDOW_MS = 86_400_000

#: the row columns in order, with their dtypes (quantiles are a 2-D column of their own)
WINDOW_COLUMNS: tuple[tuple[str, type[np.generic]], ...] = (
    ("series", np.int64),
    ("window_start", np.int64),
    ("rev", np.int32),
    ("count", np.int64),
    ("nan_count", np.int64),
    ("sum", np.float64),
    ("min", np.float64),
    ("max", np.float64),
    ("mean", np.float64),
    ("mean_error", np.float64),
    ("std", np.float64),
    ("first", np.float64),
    ("last", np.float64),
    ("first_ts", np.int64),
    ("last_ts", np.int64),
)


def check_window_ms(window_ms: int) -> int:
    """Return window_ms as an int, or raise ValueError when it is outside 1 ms .. 1 day."""
    if isinstance(window_ms, bool) or not isinstance(window_ms, int | np.integer):
        raise ValueError(f"window_ms must be an integer number of milliseconds, got {window_ms!r}")
    if not 1 <= int(window_ms) <= MAX_WINDOW_MS:
        raise ValueError(f"window_ms must be within 1..{MAX_WINDOW_MS}, got {window_ms}")
    return int(window_ms)


def _empty_quantiles() -> Float64Array:
    return np.zeros((0, 0), np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class Windows:
    """One row per (series, window_start) holding at least one reading, sorted by series, window_start.

    Windows are `[window_start, window_start + window_ms)`, aligned to the Unix epoch. `count` counts
    valid (non-NaN) values and `nan_count` the NaN ones; the statistics of a window without a valid
    value are NaN. `mean + mean_error` is the mean to about twice float64 precision: merging needs
    it to keep `std` exact for windows whose spread is tiny next to their mean (1e12 + noise). `std` is the population standard deviation (ddof=0). `first`/`last` are the valid
    values at the earliest/latest timestamp (ties: the earlier/later reading in input order) and
    `first_ts`/`last_ts` their timestamps; a window holding only NaN values reports the timestamps of
    its earliest/latest reading. `rev` is 0 for a first emission and counts revisions after late data.
    An infinite value makes its window's sum, mean and std NaN (min/max/first/last keep it).
    `quantiles[:, j]` holds the exact quantile `quantile_levels[j]` (linear interpolation, as numpy's
    and pandas' default); quantiles cannot be merged, so merged windows have none.
    """

    window_ms: int
    series: Int64Array
    window_start: Int64Array
    rev: Int32Array
    count: Int64Array
    nan_count: Int64Array
    sum: Float64Array
    min: Float64Array
    max: Float64Array
    mean: Float64Array
    mean_error: Float64Array
    std: Float64Array
    first: Float64Array
    last: Float64Array
    first_ts: Int64Array
    last_ts: Int64Array
    quantile_levels: tuple[float, ...] = ()
    quantiles: Float64Array = field(default_factory=_empty_quantiles)

    def __post_init__(self) -> None:
        check_window_ms(self.window_ms)
        rows = len(self.series)
        for name, dtype in WINDOW_COLUMNS:
            column = np.asarray(getattr(self, name), dtype=dtype)
            if column.shape != (rows,):
                raise ValueError(f"column {name} has shape {column.shape}, expected ({rows},)")
            object.__setattr__(self, name, column)
        levels = tuple(float(q) for q in self.quantile_levels)
        quantiles = np.asarray(self.quantiles, np.float64).reshape(rows, len(levels))
        object.__setattr__(self, "quantile_levels", levels)
        object.__setattr__(self, "quantiles", quantiles)

    def __len__(self) -> int:
        return len(self.series)

    @classmethod
    def empty(cls, window_ms: int, quantile_levels: Sequence[float] = ()) -> Windows:
        """No windows at all (what aggregating zero readings gives)."""
        columns: dict[str, Any] = {name: np.zeros(0, dtype) for name, dtype in WINDOW_COLUMNS}
        levels = tuple(quantile_levels)
        quantiles = np.zeros((0, len(levels)), np.float64)
        return cls(window_ms, **columns, quantile_levels=levels, quantiles=quantiles)

    def columns(self) -> dict[str, NDArray[Any]]:
        """The row columns by name (without quantiles), e.g. for the wire encoder."""
        return {name: getattr(self, name) for name, _ in WINDOW_COLUMNS}

    def take(self, rows: NDArray[Any]) -> Windows:
        """The windows at the given row indices or boolean mask (keep them sorted to keep the order)."""
        taken: dict[str, Any] = {name: column[rows] for name, column in self.columns().items()}
        return replace(self, **taken, quantiles=self.quantiles[rows])

    def with_rev(self, rev: NDArray[Any]) -> Windows:
        """The same windows carrying other revision numbers."""
        return replace(self, rev=np.asarray(rev, np.int32))

    def window_end(self) -> Int64Array:
        """Exclusive end of every window (ms UTC)."""
        return self.window_start + np.int64(self.window_ms)


def concat(parts: Sequence[Windows], window_ms: int) -> Windows:
    """Rows of all parts one after another (no sorting, no merging; quantiles are dropped)."""
    if not parts:
        return Windows.empty(window_ms)
    if any(part.window_ms != window_ms for part in parts):
        raise ValueError("cannot combine windows of different lengths")
    columns: dict[str, Any] = {
        name: np.concatenate([getattr(part, name) for part in parts]) for name, _ in WINDOW_COLUMNS
    }
    return Windows(window_ms, **columns)


def two_sum(a: Float64Array, b: Float64Array) -> tuple[Float64Array, Float64Array]:
    """(a + b rounded, its exact rounding error): Knuth's TwoSum, branch-free."""
    total = a + b
    with np.errstate(invalid="ignore"):
        b_part = total - a
        error = (a - (total - b_part)) + (b - b_part)
    return total, np.where(np.isfinite(total), error, 0.0)
