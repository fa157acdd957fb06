"""Raw readings <-> the columnar `readings` map of the body (sorted by series, then timestamp)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from gateway.wire import intcol, steps
from gateway.wire.batch import ReadingColumns, SeriesInfo
from gateway.wire.scale import Scale, dequantise, quantise, scale_of
from kernel.errors import MalformedBatch

# keys of the readings map (docs/wire-format.md, "Readings")
COUNTS, HEADS, TIMESTAMPS, _, FLOATS, QUALITY, EXCEPTIONS = range(7)  # 3, 7, 8, 9: steps.py

IntArray = npt.NDArray[np.int64]


def encode_readings(
    readings: ReadingColumns, series: Sequence[SeriesInfo], created_s: int = 0
) -> tuple[dict[int, Any], Callable[[], dict[int, Any]]]:
    """The readings map: per-series heads, delta-of-delta timestamps, value deltas, float64 bytes.

    `created_s` is the batch's creation time (version 5): the first timestamp head is relative to it.

    Two of them: with the columns chosen by size, and (made when called) *plain*: timestamps and
    steps as varints, no predictors, grids or groups, the writer's fallback (`body._smallest_frame`).
    """
    _check_series_index(readings.series, len(series))
    order = _reading_order(readings.series, readings.ts_ms)
    sid = readings.series[order].astype(np.int64)
    counts = np.bincount(sid, minlength=len(series)).astype(np.int64)
    starts = _starts(counts)
    scales = [scale_of(s.resolution) for s in series]
    quantised = np.array([sc is not None for sc in scales], dtype=bool)[sid]
    tres = np.array([s.time_resolution_ms for s in series], dtype=np.int64)[sid]
    tq = np.floor_divide(readings.ts_ms[order] + tres // 2, tres)
    q, exceptions = _quantise_all(readings.value[order], sid, scales, quantised)
    heads = _heads(tq, q, starts, counts, quantised)
    if heads.size:
        heads[0] -= time_origin(created_s, counts.tolist(), series)
    first = np.zeros(sid.size, dtype=bool)
    first[starts[counts > 0]] = True
    # version 5: counts and heads in one int-column (a 57-s batch of 30 series: 33 bytes less after
    # zstd than two CBOR arrays, whose 3- to 5-byte integers are mostly heads of 2-3 varint bytes)
    body: dict[int, Any] = {COUNTS: intcol.pack(np.concatenate([counts, heads]))}
    dod = _delta_of_delta(tq, first)[~first]
    if dod.size:
        body[TIMESTAMPS] = intcol.pack(dod)
    intervals = _typical_intervals(tq * tres, starts, counts)
    delta = _delta(q, first)
    body.update(_grids_packed(steps.encode_steps(delta, starts, counts, scales, intervals)))
    _add_sparse_columns(body, readings, order, quantised, exceptions)

    def plain() -> dict[int, Any]:
        columns = {TIMESTAMPS: intcol.pack(dod, plain=True)} if dod.size else {}
        columns.update(steps.encode_steps(delta, starts, counts, scales, intervals, plain=True))
        return {**{k: v for k, v in body.items() if k not in steps.CHOSEN_KEYS}, **columns}

    return body, plain


def _reading_order(series: npt.NDArray[Any], ts_ms: IntArray) -> IntArray:
    """Row indices that sort the readings by series, then time, stably: the identity where they are
    so already (a buffer reads them in that order; checking takes 22 us of lexsort's 160 for 6,000)."""
    later = series[1:] > series[:-1]
    if bool((later | ((series[1:] == series[:-1]) & (ts_ms[1:] >= ts_ms[:-1]))).all()):
        return np.arange(series.size)
    order: IntArray = np.lexsort((ts_ms, series))
    return order


def _add_sparse_columns(
    body: dict[int, Any],
    readings: ReadingColumns,
    order: IntArray,
    quantised: npt.NDArray[np.bool_],
    exceptions: npt.NDArray[np.bool_],
) -> None:
    """Keys 4, 5 and 6: lossless values, quality flags, exceptions."""
    if not quantised.all():
        body[FLOATS] = readings.value[order][~quantised].astype("<f8").tobytes()
    quality = readings.quality[order]
    if quality.any():
        where = np.flatnonzero(quality)
        positions = [intcol.pack(np.diff(where, prepend=0)), intcol.pack(quality[where])]
        runs = _quality_runs(quality)
        # runs pay where flags come in stretches (a sensor out of range for minutes: profile (b)'s
        # dew point, 7 bytes less a batch), positions where they are scattered
        body[QUALITY] = (
            runs if intcol.final_size(runs) < sum(map(intcol.final_size, positions)) else positions
        )
    if exceptions.any():
        where = np.flatnonzero(exceptions)
        values = readings.value[order][where].astype("<f8").tobytes()
        body[EXCEPTIONS] = [intcol.pack(np.diff(where, prepend=0)), values]


def decode_readings(body: object, series: Sequence[SeriesInfo], created_s: int = 0) -> ReadingColumns:
    """Columns from a readings map; MalformedBatch on anything inconsistent. `created_s`: the creation
    time of a version-5 batch (the origin of its first timestamp head), 0 for versions 1 to 4."""
    if not isinstance(body, dict):
        raise MalformedBatch("readings must be a map")
    body = grids_listed(body)
    counts, heads = counts_and_heads(body, series, created_s)
    count = np.array(counts, dtype=np.int64)
    n = sum(counts)
    sid = np.repeat(np.arange(len(series), dtype=np.int64), count)
    starts = _starts(count)
    live = count > 0
    scales, quantised_series, time_resolution = table_facts(series)
    quantised = quantised_series[sid]
    first = np.zeros(n, dtype=bool)
    first[starts[live]] = True
    t_heads, q_heads = _split_heads(heads, live, quantised_series)
    dod = _scatter(n, ~first, _int_column(body, TIMESTAMPS, int((~first).sum())))
    delta = segment_cumsum(dod, starts, count)
    delta[first] = t_heads
    ts = segment_cumsum(delta, starts, count) * time_resolution[sid]
    values = _decode_values(body, sid, first, quantised, (starts, count, q_heads), scales)
    quality = _decode_quality(body.get(QUALITY), n)
    return ReadingColumns(series=sid.astype(np.int32), ts_ms=ts, value=values, quality=quality)


def counts_and_heads(
    body: dict[Any, Any], series: Sequence[SeriesInfo], created_s: int = 0
) -> tuple[list[int], list[int]]:
    """The readings count of each series, checked (one non-negative count per series, at most
    intcol.MAX_VALUES in all), and the heads (3.2.1) with the first timestamp head made absolute
    (`time_origin`, wrapping as int64 does). Versions 1-4: the arrays at keys 0 and 1; version 5:
    one int-column at key 0, the counts first, the heads after them (unpacked once)."""
    item = body.get(COUNTS)
    heads: list[int] | None = None
    if isinstance(item, bytes):
        if HEADS in body:
            raise MalformedBatch("readings with counts and heads in one column carry no key 1")
        both: list[int] = intcol.unpack_any(item).tolist()
        counts, heads = both[: len(series)], both[len(series) :]
    else:
        counts = int_list(item, "readings counts")
    if len(counts) != len(series) or any(c < 0 for c in counts):
        raise MalformedBatch("readings counts must give one non-negative count per series")
    if sum(counts) > intcol.MAX_VALUES:
        raise MalformedBatch(f"{sum(counts)} readings, more than the {intcol.MAX_VALUES} a batch may hold")
    if heads is None:
        heads = list(int_list(body.get(HEADS), "readings heads"))
    origin = time_origin(created_s, counts, series)
    if origin and heads:
        heads[0] = (heads[0] + origin + 2**63) % 2**64 - 2**63
    return counts, heads


def time_origin(created_s: int, counts: Sequence[int], series: Sequence[SeriesInfo]) -> int:
    """What version 5's first timestamp head is relative to: the creation time in the time resolution
    of the first series with readings, floor(1000 * created_s / resolution) (3.2.1). The absolute
    head of a 57-s batch of profile (b) is a 6-byte varint, the relative one 2 (5 bytes a batch less
    after zstd); 0 when `created_s` is (versions 1 to 4) or no series has readings."""
    first = next((s for s, c in enumerate(counts) if c > 0), None)
    if not created_s or first is None:
        return 0
    return created_s * 1000 // int(series[first].time_resolution_ms)


T = TypeVar("T")


class PerTable(Generic[T]):
    """What is derived from a series table, kept per table object (the same tuple while body.py's table
    cache holds it); the table is kept beside its facts so that its id is not reused while the entry
    lives, and a list, which may change under the same id, is not kept."""

    def __init__(self, build: Callable[[Sequence[SeriesInfo]], T], kept: int = 16384) -> None:
        self._build = build
        self._limit = kept
        self._kept: dict[int, tuple[Sequence[SeriesInfo], T]] = {}

    def __call__(self, series: Sequence[SeriesInfo]) -> T:
        known = self._kept.get(id(series))
        if known is not None and known[0] is series:
            return known[1]
        facts = self._build(series)
        if isinstance(series, tuple):
            if len(self._kept) >= self._limit:
                self._kept.clear()
            self._kept[id(series)] = (series, facts)
        return facts


def _facts(series: Sequence[SeriesInfo]) -> tuple[list[Scale], npt.NDArray[np.bool_], IntArray]:
    scales = [scale_of(s.resolution) for s in series]
    quantised = np.array([sc is not None for sc in scales], dtype=bool)
    time_resolution = np.array([s.time_resolution_ms for s in series], dtype=np.int64)
    return scales, quantised, time_resolution


#: a table's scales, which series are quantised and their time resolutions (rebuilding them was
#: ~5 % of decoding a 100-reading batch)
table_facts: PerTable[tuple[list[Scale], npt.NDArray[np.bool_], IntArray]] = PerTable(_facts)


def _typical_intervals(ts: IntArray, starts: IntArray, counts: IntArray) -> list[float]:
    """Mean ms between consecutive readings of each series (0 for fewer than two)."""
    live = counts > 1
    span = np.zeros(counts.size, dtype=np.float64)
    span[live] = (ts[starts[live] + counts[live] - 1] - ts[starts[live]]) / (counts[live] - 1)
    intervals: list[float] = span.tolist()
    return intervals


def _decode_values(
    body: dict[Any, Any],
    sid: IntArray,
    first: npt.NDArray[np.bool_],
    quantised: npt.NDArray[np.bool_],
    segments: tuple[IntArray, IntArray, IntArray],
    scales: list[Scale],
) -> npt.NDArray[np.float64]:
    starts, count, q_heads = segments
    n = sid.size
    d = steps.decode_steps(body, sid, ~first & quantised, len(scales))
    d[first & quantised] = q_heads
    q = segment_cumsum(d, starts, count)
    values = np.zeros(n, dtype=np.float64)
    for scale, mine in _by_scale(scales, sid):
        values[mine] = dequantise(q[mine], scale)
    floats = _bytes(body, FLOATS)
    if len(floats) != 8 * int((~quantised).sum()):
        raise MalformedBatch("float64 column length does not match the lossless series' counts")
    values[~quantised] = np.frombuffer(floats, dtype="<f8")
    if EXCEPTIONS in body:
        where, raw = read_sparse(body[EXCEPTIONS], n, "exceptions")
        if not isinstance(raw, bytes) or len(raw) != 8 * where.size:
            raise MalformedBatch("exception values must be 8 bytes each")
        values[where] = np.frombuffer(raw, dtype="<f8")
    return values


def _decode_quality(item: object, n: int) -> npt.NDArray[np.uint16]:
    quality = np.zeros(n, dtype=np.uint16)
    if item is not None:
        where, flags = flagged(item, n)
        quality[where] = flags
    return quality


def flagged(item: object, n: int) -> tuple[IntArray, npt.NDArray[np.uint16]]:
    """The positions of the readings with nonzero quality flags and their flags (3.2.7): from
    [positions, flags], or (version 5) from the runs of equal flags in one int-column."""
    if isinstance(item, bytes):
        quality = _quality_of_runs(item, n)
        where = np.flatnonzero(quality)
        return where, quality[where]
    where, packed = read_sparse(item, n, "quality")
    if not isinstance(packed, bytes):
        raise MalformedBatch("quality values must be a byte string")
    flags = intcol.unpack(packed, where.size)
    if flags.size and (flags.min() < 0 or flags.max() > 0xFFFF):
        raise MalformedBatch("quality flags must fit in 16 bits")
    return where, flags.astype(np.uint16)


def _quality_runs(quality: npt.NDArray[np.uint16]) -> bytes:
    """Version 5's run form of the quality flags: the r run lengths, then the flags of each run."""
    flags = quality.astype(np.int64)
    starts = np.flatnonzero(np.diff(flags, prepend=-1))
    lengths = np.diff(starts, append=flags.size)
    return intcol.pack(np.concatenate([lengths, flags[starts]]))


def _quality_of_runs(packed: bytes, n: int) -> npt.NDArray[np.uint16]:
    ints = intcol.unpack_any(packed)
    runs = ints.size // 2
    lengths, flags = ints[:runs], ints[runs:]
    if ints.size % 2 or lengths.min(initial=1) < 1 or lengths.max(initial=0) > n or int(lengths.sum()) != n:
        raise MalformedBatch(f"quality runs must be run lengths of at least 1 adding up to {n}, then flags")
    if flags.size and (flags.min() < 0 or flags.max() > 0xFFFF):
        raise MalformedBatch("quality flags must fit in 16 bits")
    return np.repeat(flags.astype(np.uint16), lengths)


def _grids_packed(entries: dict[int, Any]) -> dict[int, Any]:
    """Version 5 writes key 7's [series, a, j] triples as one int-column: every series, then every
    a, then every j (profile (b)'s ten pressure grids: 9 bytes less a batch after zstd)."""
    if steps.LATTICES in entries:
        triples = np.array(entries[steps.LATTICES], dtype=np.int64)
        entries[steps.LATTICES] = intcol.pack(triples.T.ravel())
    return entries


def grids_listed(body: dict[Any, Any]) -> dict[Any, Any]:
    """The readings map with key 7 as the [series, a, j] triples steps.py reads (versions 1-4 carry
    them so; version 5 packs them, `_grids_packed`)."""
    packed = body.get(steps.LATTICES)
    if not isinstance(packed, bytes):
        return body
    ints = intcol.unpack_any(packed)
    if ints.size == 0 or ints.size % 3:
        raise MalformedBatch("readings grids must hold series, a and j for one or more series")
    return {**body, steps.LATTICES: ints.reshape(3, -1).T.tolist()}


def read_sparse(item: object, n: int, what: str) -> tuple[IntArray, object]:
    """Positions (delta-coded, strictly increasing, < n) and the undecoded second element."""
    if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], bytes):
        raise MalformedBatch(f"{what} must be [positions, values]")
    gaps = intcol.unpack_any(item[0])
    where = np.cumsum(gaps)
    if where.size and (gaps[1:].min(initial=1) < 1 or where[0] < 0 or where[-1] >= n):
        raise MalformedBatch(f"{what} positions out of order or out of range")
    return where, item[1]


def _quantise_all(
    values: npt.NDArray[np.float64],
    sid: IntArray,
    scales: list[Scale],
    quantised: npt.NDArray[np.bool_],
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    q = np.zeros(values.size, dtype=np.int64)
    bad = np.zeros(values.size, dtype=bool)
    for scale, mine in _by_scale(scales, sid):
        q[mine], bad[mine] = quantise(values[mine], scale)
    if bad.any():  # carry the previous value so the exception costs no delta
        keep = np.where(bad, 0, np.arange(values.size))
        q = q[np.maximum.accumulate(keep)]
    return q, bad & quantised


def _by_scale(scales: list[Scale], sid: IntArray) -> list[tuple[int | float, npt.NDArray[np.bool_]]]:
    """Each distinct non-null scale with the mask of the readings of its series."""
    distinct = sorted({sc for sc in scales if sc is not None}, key=repr)
    scale_id = np.array([-1 if sc is None else distinct.index(sc) for sc in scales], dtype=np.int64)
    of_reading = scale_id[sid] if scales else np.zeros(0, np.int64)
    return [(sc, of_reading == i) for i, sc in enumerate(distinct)]


def _heads(
    tq: IntArray, q: IntArray, starts: IntArray, counts: IntArray, quantised: npt.NDArray[np.bool_]
) -> IntArray:
    """First timestamps of the non-empty series, then first integers of the quantised ones.

    Each as the difference to the one before it (series of one batch start at similar times).
    """
    live = starts[counts > 0]
    t_heads = np.diff(tq[live], prepend=0)
    q_heads = np.diff(q[live[quantised[live]]], prepend=0)
    return np.concatenate([t_heads, q_heads])


def _split_heads(
    item: list[int], live: npt.NDArray[np.bool_], quantised_series: npt.NDArray[np.bool_]
) -> tuple[IntArray, IntArray]:
    heads = _int64(item)
    n_t = int(live.sum())
    n_q = int((live & quantised_series).sum())
    if heads.size != n_t + n_q:
        raise MalformedBatch(f"readings heads hold {heads.size} values, the counts need {n_t + n_q}")
    return np.cumsum(heads[:n_t]), np.cumsum(heads[n_t:])


def _delta(x: IntArray, first: npt.NDArray[np.bool_]) -> IntArray:
    """x[i] - x[i-1] within a series (0 at the first reading of a series)."""
    d = np.zeros_like(x)
    d[1:] = x[1:] - x[:-1]
    d[first] = 0
    return d


def _delta_of_delta(x: IntArray, first: npt.NDArray[np.bool_]) -> IntArray:
    """Second differences within a series, the delta before the first being 0."""
    d = _delta(x, first)
    dd = np.zeros_like(x)
    dd[1:] = d[1:] - d[:-1]
    return dd


def segment_cumsum(x: IntArray, starts: IntArray, counts: IntArray) -> IntArray:
    """Running sums restarting at each series (int64 wrap-around cancels out exactly)."""
    c = np.cumsum(x)
    live = counts > 0
    offset = c[starts[live]] - x[starts[live]]
    return c - np.repeat(offset, counts[live])


def _scatter(n: int, mask: npt.NDArray[np.bool_], values: IntArray) -> IntArray:
    out = np.zeros(n, dtype=np.int64)
    out[mask] = values
    return out


def _starts(counts: IntArray) -> IntArray:
    return np.cumsum(counts) - counts


def _check_series_index(series: npt.NDArray[np.int32], size: int) -> None:
    if series.size and (int(series.min()) < 0 or int(series.max()) >= size):
        raise ValueError(f"reading series index outside the series table of {size} rows")


def _int_column(body: dict[Any, Any], key: int, count: int) -> IntArray:
    """An integer column of the readings map; an absent one holds no values."""
    if key not in body and count == 0:
        return np.zeros(0, np.int64)
    return intcol.unpack(_bytes(body, key), count)


def _bytes(body: dict[Any, Any], key: int) -> bytes:
    item = body.get(key, b"")
    if not isinstance(item, bytes):
        raise MalformedBatch(f"readings field {key} must be a byte string")
    return item


def int_list(item: object, what: str) -> list[int]:
    # `type(x) is int` refuses bools and int subclasses in one test; min and max bound the range
    # in C (a generator testing each element was ~5 % of decoding a 100-reading batch)
    if (
        not isinstance(item, list)
        or not all(type(x) is int for x in item)
        or (item and not (min(item) >= -(2**63) and max(item) < 2**63))
    ):
        raise MalformedBatch(f"{what} must be an array of 64-bit integers")
    return item


def _int64(values: list[int]) -> IntArray:
    return np.array(values, dtype=np.int64)
