"""Dense group ids for (series, window) pairs, found without sorting the readings where possible.

The fast path needs no sort at all: when `series range x window range` is small compared with the
number of readings (the normal case: a few thousand sensors, a bounded time span), the group id is
`window_code * n_series + series_code`, computed in cache-sized chunks. Window-major ids keep the
slots that readings arriving in time order touch close together in memory, which makes the
scatters of the aggregation about a third faster than series-major ids. Sparse inputs (ids or
timestamps scattered over a huge range) fall back to compacting the codes, and as a last resort to
`np.unique`, so every input is handled in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

Int64Array = NDArray[np.int64]
IntArray = NDArray[np.integer[Any]]
IntpArray = NDArray[np.intp]

#: readings per chunk: the chunk's temporaries stay in the CPU cache
CHUNK = 1 << 16


def group_budget(n: int) -> int:
    """How many group slots we allow for n readings: the per-group accumulators stay < input size."""
    return n // 2 + 4096


@dataclass(frozen=True, slots=True)
class Grouping:
    """Group id of every reading, and the (series, window index) behind every group id."""

    #: group id of every reading (0 <= id < size); dense ids are filled in by `chunk_ids`
    ids: IntpArray
    #: number of group ids; some may hold no reading
    size: int
    #: group id = series_code * stride + window_code, or window_code * stride + series_code
    stride: int
    #: series value of every series code
    series_values: Int64Array
    #: window index (window_start // window_ms) of every window code
    window_values: Int64Array
    #: when the ids were compacted: the (series_code * stride + window_code) of every id
    compacted: Int64Array | None = None
    #: ids are window_code * stride + series_code (stride = number of series codes)
    window_major: bool = False
    #: earliest and latest timestamp of the readings
    ts_range: tuple[int, int] = (0, 0)
    #: dense ids still to compute: (window_ms, first window index, first series id)
    dense: tuple[int, int, int] | None = None

    @classmethod
    def of(cls, series: IntArray, ts_ms: Int64Array, window_ms: int) -> Grouping:
        """Group readings by (series, floor(ts_ms / window_ms))."""
        n = len(ts_ms)
        s_lo, s_hi = int(series.min()), int(series.max())
        ts_range = int(ts_ms.min()), int(ts_ms.max())
        w_lo, w_hi = ts_range[0] // window_ms, ts_range[1] // window_ms
        n_series, n_windows = s_hi - s_lo + 1, w_hi - w_lo + 1
        if n_series * n_windows <= group_budget(n):
            # computed chunk by chunk while aggregating, when the chunk is in the cache anyway
            ids = np.empty(n, np.intp)
            series_values = np.arange(s_lo, s_hi + 1, dtype=np.int64)
            window_values = np.arange(w_lo, w_hi + 1, dtype=np.int64)
            size, dense = n_series * n_windows, (window_ms, w_lo, s_lo)
            return cls(ids, size, n_series, series_values, window_values, None, True, ts_range, dense)
        return replace(cls._sparse(series, ts_ms // window_ms), ts_range=ts_range)

    @classmethod
    def _sparse(cls, series: IntArray, windows: Int64Array) -> Grouping:
        series_codes, series_values = compact_codes(series)
        window_codes, window_values = compact_codes(windows)
        stride = len(window_values)
        combined = series_codes * np.int64(stride) + window_codes
        if len(series_values) * stride <= group_budget(len(series)):
            ids = combined.astype(np.intp, copy=False)
            return cls(ids, len(series_values) * stride, stride, series_values, window_values)
        keys, inverse = np.unique(combined, return_inverse=True)
        ids = inverse.reshape(-1).astype(np.intp, copy=False)
        return cls(ids, len(keys), stride, series_values, window_values, keys)

    def chunk_ids(self, series: IntArray, ts_ms: Int64Array, chunk: slice) -> IntpArray:
        """Group ids of the readings in chunk; call it once per chunk before using `ids`."""
        out = self.ids[chunk]
        if self.dense is None:
            return out
        window_ms, w_lo, s_lo = self.dense
        # on 64-bit platforms intp is int64 and the ids are computed in place
        work = out if out.dtype == np.int64 else np.empty(len(out), np.int64)
        np.floor_divide(ts_ms[chunk], window_ms, out=work)
        np.subtract(work, w_lo, out=work)
        np.multiply(work, self.stride, out=work)
        np.add(work, series[chunk], out=work)
        if s_lo:
            np.subtract(work, s_lo, out=work)
        if work is not out:
            out[:] = work
        return out

    def keys(self, groups: IntpArray) -> tuple[Int64Array, Int64Array]:
        """(series, window index) of the given group ids."""
        combined = groups if self.compacted is None else self.compacted[groups]
        high, low = np.divmod(combined, self.stride)
        series_codes, window_codes = (low, high) if self.window_major else (high, low)
        return self.series_values[series_codes], self.window_values[window_codes]

    def ordered(self, present: NDArray[np.bool_]) -> IntpArray:
        """Ids of the present groups, sorted by series then window."""
        if not self.window_major:
            return np.flatnonzero(present)
        by_series = np.arange(self.size, dtype=np.intp).reshape(-1, self.stride).T.ravel()
        return by_series[present[by_series]]


def compact_codes(values: IntArray) -> tuple[Int64Array, Int64Array]:
    """Codes 0..k-1 for the k distinct values (in sorted order), and those values."""
    lo, hi = int(values.min()), int(values.max())
    if hi - lo + 1 <= 4 * len(values) + 1024:
        offsets = values.astype(np.int64) - lo
        present = np.zeros(hi - lo + 1, np.bool_)
        present[offsets] = True
        code_of_offset = np.cumsum(present, dtype=np.int64) - 1
        return code_of_offset[offsets], np.flatnonzero(present).astype(np.int64) + lo
    distinct, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), distinct.astype(np.int64)
