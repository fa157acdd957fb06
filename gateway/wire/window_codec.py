"""Aggregation windows <-> the columnar `windows` array of the body (row order kept)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.wire import intcol
from gateway.wire.batch import WINDOW_FIELDS, WindowColumns
from kernel.errors import MalformedBatch

#: integer columns stored relative to the same row's window_start rather than the previous row
_RELATIVE_TO_START = frozenset({"first_ts", "last_ts"})


def encode_windows(windows: WindowColumns, series_count: int) -> list[Any]:
    """[row count, one byte string per column in WINDOW_FIELDS order]."""
    if len(windows) and (windows.series.min() < 0 or windows.series.max() >= series_count):
        raise ValueError(f"window series index outside the series table of {series_count} rows")
    out: list[Any] = [len(windows)]
    for name, dtype in WINDOW_FIELDS:
        column = getattr(windows, name)
        if dtype is np.float64:
            out.append(column.astype("<f8").tobytes())
        elif name in _RELATIVE_TO_START:
            out.append(intcol.pack(column - windows.window_start))
        else:
            out.append(intcol.pack(np.diff(column.astype(np.int64), prepend=0)))
    return out


def decode_windows(item: object, series_count: int, max_rows: int) -> WindowColumns:
    """Columns from a windows array; MalformedBatch on anything inconsistent."""
    if not isinstance(item, list) or len(item) != 1 + len(WINDOW_FIELDS):
        raise MalformedBatch(f"windows must be an array of {1 + len(WINDOW_FIELDS)} elements")
    n = item[0]
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= max_rows:
        raise MalformedBatch(f"window count must be an integer in 0..{max_rows}")
    columns: dict[str, npt.NDArray[Any]] = {}
    for (name, dtype), data in zip(WINDOW_FIELDS, item[1:], strict=True):
        if not isinstance(data, bytes):
            raise MalformedBatch(f"window column {name} must be a byte string")
        if dtype is np.float64:
            if len(data) != 8 * n:
                raise MalformedBatch(f"window column {name} must hold {n} float64 values")
            columns[name] = np.frombuffer(data, dtype="<f8").astype(np.float64)
        elif name in _RELATIVE_TO_START:
            columns[name] = intcol.unpack(data, n) + columns["window_start"]
        else:
            columns[name] = np.cumsum(intcol.unpack(data, n))
    series = columns["series"]
    if n and (series.min() < 0 or series.max() >= series_count):
        raise MalformedBatch("window series index outside the series table")
    for name in ("rev", "series"):
        if n and (columns[name].min() < -(2**31) or columns[name].max() >= 2**31):
            raise MalformedBatch(f"window column {name} does not fit in 32 bits")
    return WindowColumns(**columns)
