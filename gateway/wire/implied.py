"""Version 6's readings map: the int-columns whose length the decoder can work out travel without it.

Version 5 opens every counted int-column (methods 1 to 7, section 4) with `uvarint count`, and a
sparse column (method 3) also with its number of nonzero entries, although the counts in key 0
already say how many timestamp second differences (key 2), value residuals per coding group (key
3) and grid steps (key 8) a batch holds. Version 6 leaves those numbers out, writes an all-zero
column as an empty byte string (an absent key 2 or 3 holds zeros), and one coding group's column
as the byte string itself instead of an array of one. On the hourly series alone that is 11 bytes
of a 144-byte batch (sand-point air pressure) and 5-7 bytes of every other.

The writer builds the version-5 map and `drop_counts` rewrites it; the reader's `restore_counts`
puts the counts back from key 0 (checked there) before the version-5 decoder, and the group
decoder of `gateway.wire.group`, read it: a column that holds more or fewer integers than its
implied count is refused by the same checks as in version 5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.wire import huffman, intcol, mixing, modelled, steps, varint
from gateway.wire.batch import SeriesInfo
from gateway.wire.readings import TIMESTAMPS, counts_and_heads, grids_listed, table_facts
from kernel.errors import MalformedBatch

#: an all-zero column (docs/wire-format.md 4, "Implied counts")
ZEROS = b""
_SPARSE = bytes([intcol.METHOD_SPARSE])
#: up to this many series the regular column's gaps are written one by one (10 series: 75 -> 40 us)
_FEW_SERIES = 64


def drop_counts(
    readings: dict[int, Any], series: Sequence[SeriesInfo], created_s: int, like: dict[int, Any] | None = None
) -> dict[int, Any]:
    """A version-5 readings map in version 6's form (the counts of keys 2, 3 and 8 left out, the
    timestamps of series that are all regular at one interval as that interval). `like`: the
    version-6 form of other columns of the same readings (the writer's plain variant of its chosen
    map): the timestamps are regular, or all zero, where they were there."""
    out = dict(readings)
    if like is not None and (TIMESTAMPS not in like or isinstance(like[TIMESTAMPS], int)):
        out.pop(TIMESTAMPS, None)
        out.update({TIMESTAMPS: like[TIMESTAMPS]} if TIMESTAMPS in like else {})
    elif TIMESTAMPS in out:
        interval = None
        if like is None and out[TIMESTAMPS][0] in (intcol.METHOD_VARINT, intcol.METHOD_SPARSE):
            # a Huffman or LZMA column is not regular: its zeros would have made it sparse
            counts, _ = counts_and_heads(readings, series, created_s)
            interval = _regular_interval(out[TIMESTAMPS], np.array(counts, dtype=np.int64))
        out[TIMESTAMPS] = _implied(out[TIMESTAMPS]) if interval is None else interval
        if out[TIMESTAMPS] == ZEROS:
            del out[TIMESTAMPS]
    if steps.STEPS in out:
        columns = [_implied(c) for c in out[steps.STEPS]]
        if all(c == ZEROS for c in columns):  # a constant series: nothing but its head to send
            for key in (steps.STEPS, steps.GROUPS, steps.PREDICTORS):
                out.pop(key, None)
        else:
            out[steps.STEPS] = columns[0] if len(columns) == 1 else columns
    if steps.GRID_STEPS in out:
        out[steps.GRID_STEPS] = out[steps.GRID_STEPS][_count_end(out[steps.GRID_STEPS], 0) :]
    return out


def _regular_interval(column: bytes, counts: npt.NDArray[np.int64]) -> int | None:
    """The interval I when every series with two or more readings is regular at that one I (its
    second differences I, 0, 0, ...), as sparse or varint columns hold them; else None.

    Hourly or one-minute series, and an agent's batch of sensors polled at one rate: the sparse
    column `03 901c 00 02` (factor 3600, one entry) becomes the CBOR integer `19 0e10`.
    """
    second = _second_readings(counts)
    if second.size == 0:
        return None
    if column[0] == intcol.METHOD_VARINT:
        dod = intcol.unpack_any(column)
        where = np.flatnonzero(dod)
        nonzero = dod[where]
    else:  # sparse: read its entries only, not the thousands of zeros between them
        entries, pos = huffman.read_uvarint(column, _count_end(column, 1))
        factor, pos = huffman.read_uvarint(column, pos)
        both = varint.unpack(column[pos:])
        where = np.cumsum(varint.zigzag(both[:entries]).astype(np.int64) + 1) - 1
        nonzero = both[entries:] * np.int64(factor)
    # every series' first entry, and nothing else, nonzero and the same (an interval of 0 is the
    # all-zero column, written as such)
    if not np.array_equal(where, second):
        return None
    interval = int(nonzero[0])
    return interval if bool((nonzero == interval).all()) else None


def _second_readings(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Where each series with two or more readings has its first timestamp second difference (the
    column holds count - 1 of them per series with readings)."""
    per_series = (counts - 1).clip(0)
    starts: npt.NDArray[np.int64] = np.cumsum(per_series) - per_series
    return starts[counts >= 2]


def _regular_column(interval: object, counts: npt.NDArray[np.int64]) -> bytes:
    """The version-5 sparse column of timestamps all regular at `interval`: one entry per series with
    two or more readings (built from those entries: the zeros between them are never made)."""
    if type(interval) is not int or not -(2**63) <= interval < 2**63:
        raise MalformedBatch("a regular interval must be a 64-bit integer")
    second = _second_readings(counts)
    size = int((counts - 1).clip(0).sum())
    if interval == 0 or second.size == 0:
        return _SPARSE + huffman.uvarint(size) + b"\x00\x01"
    factor = abs(interval) if abs(interval) < 1 << 62 else 1  # as `intcol.pack_sparse` takes it
    head = _SPARSE + huffman.uvarint(size) + huffman.uvarint(second.size) + huffman.uvarint(factor)
    gaps = np.diff(second, prepend=-1) - 1
    entry = varint.pack(np.array([interval // factor], dtype=np.int64))
    if second.size <= _FEW_SERIES:  # a few series: numpy's per-call cost would be most of the time
        return head + b"".join(map(huffman.uvarint, gaps.tolist())) + entry * second.size
    return head + varint.pack(varint.unzigzag(gaps.astype(np.uint64))) + entry * second.size


def _implied(column: bytes) -> bytes:
    """A column without its count (and a sparse one without its number of nonzero entries, a PPMd
    one with its content length as the bytes beyond one per integer)."""
    if _all_zero(column):
        return ZEROS
    if column[0] == intcol.METHOD_VARINT:
        return column
    count, end = huffman.read_uvarint(column, 1)
    if column[0] == intcol.METHOD_SPARSE:
        end = _count_end(column, end)
    if column[0] == modelled.METHOD_PPMD:
        # the varints of hourly steps are nearly all one byte: 5,999 steps, 6,008 bytes of content
        # (2 bytes), stored as 9 (1 byte)
        period_end = _count_end(column, end)
        length, stream = huffman.read_uvarint(column, period_end + 1)
        return column[:1] + column[end : period_end + 1] + huffman.uvarint(length - count) + column[stream:]
    return column[:1] + column[end:]


def _all_zero(column: bytes) -> bool:
    """Whether a packed column holds only zeros, as `intcol.pack` writes them (varints or sparse)."""
    if column[0] == intcol.METHOD_VARINT:
        return column.count(0) == len(column)
    if column[0] == intcol.METHOD_SPARSE:
        return column[_count_end(column, 1)] == 0
    return False


def _count_end(data: bytes, pos: int) -> int:
    """Where the uvarint at `pos` ends."""
    _, end = huffman.read_uvarint(data, pos)
    return end


def restore_counts(item: object, series: Sequence[SeriesInfo], created_s: int) -> dict[Any, Any]:
    """A version-6 readings map in version 5's form, its implied counts written back; MalformedBatch
    when key 0's counts are invalid or a column cannot be given its count. The counts are bounded by
    key 0's checks (at most intcol.MAX_VALUES readings), so an all-zero column costs a few bytes."""
    if not isinstance(item, dict):
        raise MalformedBatch("readings must be a map")
    counts, _ = counts_and_heads(item, series, created_s)
    count = np.array(counts, dtype=np.int64)
    out = dict(item)
    timestamps = int(count.sum() - np.count_nonzero(count))
    if isinstance(out.get(TIMESTAMPS), int):
        out[TIMESTAMPS] = _regular_column(out[TIMESTAMPS], count)
    elif TIMESTAMPS in out or timestamps:
        out[TIMESTAMPS] = _stated(out.get(TIMESTAMPS, ZEROS), timestamps)
    plain, on_grid = _stepped(grids_listed(item), series, count)
    groups = out.get(steps.GROUPS, [0] * plain.size)
    if not isinstance(groups, list) or len(groups) != plain.size or not all(type(g) is int for g in groups):
        raise MalformedBatch("step groups must name one group per series with plain steps")
    columns = out.get(steps.STEPS, [ZEROS] * (max(groups, default=-1) + 1))
    columns = [columns] if isinstance(columns, bytes) else columns
    if not isinstance(columns, list) or not all(isinstance(c, bytes) for c in columns):
        raise MalformedBatch("steps must be an integer column or an array of them")
    if columns:
        if min(groups, default=0) < 0 or max(groups, default=0) >= len(columns):
            raise MalformedBatch("step group number outside the step columns")
        per_group = np.bincount(np.asarray(groups, np.int64), weights=plain - 1, minlength=len(columns))
        out[steps.STEPS] = [_step_column(c, int(n)) for c, n in zip(columns, per_group, strict=True)]
    grid = out.get(steps.GRID_STEPS)
    if isinstance(grid, bytes):
        out[steps.GRID_STEPS] = huffman.uvarint(int((on_grid - 1).sum())) + grid
    return out


def _stepped(
    readings: dict[Any, Any], series: Sequence[SeriesInfo], count: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The readings counts of the plain-step series and of the series on a grid (3.2.3, 3.2.4), in
    table order: quantised series with at least two readings, split by key 7."""
    _, quantised, _ = table_facts(series)
    stepped = quantised & (count >= 2)
    listed = readings.get(steps.LATTICES, [])
    if not isinstance(listed, list) or not all(isinstance(g, list) and g for g in listed):
        raise MalformedBatch("lattices must be an array of [series, a, j]")
    grid = np.zeros(count.size, dtype=bool)
    for entry in listed:
        if type(entry[0]) is int and 0 <= entry[0] < count.size:
            grid[entry[0]] = True  # an entry outside the table is refused by the steps' decoder
    return count[stepped & ~grid], count[stepped & grid]


def _step_column(column: object, count: int) -> bytes:
    """A version-6 value-step column with its count written back, marked as the one kind of column
    that may use method 8 (context mixing)."""
    stated = _stated(column, count)
    return mixing.ImpliedStepColumn(stated) if stated[:1] == bytes([mixing.METHOD_CONTEXT_MIXING]) else stated


def _stated(column: object, count: int) -> bytes:
    """A version-6 column with its count written back (version 5's form of it)."""
    if not isinstance(column, bytes):
        raise MalformedBatch("an integer column must be a byte string")
    if column == ZEROS:
        return _SPARSE + huffman.uvarint(count) + b"\x00\x01"  # no nonzero entry, factor 1
    if column[0] not in intcol.COUNTED_METHODS:
        return column  # no count to restore (an unknown method is refused by the decoder)
    head = column[:1] + huffman.uvarint(count)
    if column[0] == modelled.METHOD_PPMD:
        period_end = _count_end(column, 1)
        beyond, stream = huffman.read_uvarint(column, period_end + 1)
        return head + column[1 : period_end + 1] + huffman.uvarint(count + beyond) + column[stream:]
    if column[0] != intcol.METHOD_SPARSE:
        return head + column[1:]
    _, start = huffman.read_uvarint(column, 1)  # the factor
    ends = np.count_nonzero(np.frombuffer(column, np.uint8, offset=start) < 0x80)
    return head + huffman.uvarint(int(ends) // 2) + column[1:]
