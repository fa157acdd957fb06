"""The packed form of one group commit's readings (one `chunk` row): small on disk, fast to decode.

On disk a chunk is zlib over byte-planes of fixed-width records sorted by (series, ts):
series id, ts delta, value (delta of value * 10**scale when that is exact, else the float64
bits) and quality. Measured in bench/buffer_bench.py: about 1.2-2 bytes per real reading, so a
1 s commit of 100 readings fits in one or two small pages (docs/buffer.md has the numbers).

The *canonical order* of a chunk's readings is by ts (stable over the stored order); a row's
`done` counts how many readings of that order are batched. Decoding takes many chunks at once:
the per-chunk work is a single zlib call, everything else is vectorised numpy over all of them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: stored record: series id, ts delta, value delta or bits, quality
_STORED = np.dtype([("series", "<i4"), ("dts", "<i8"), ("value", "<i8"), ("quality", "<u2")])
SIZE = _STORED.itemsize
#: a scale of -1 means "values stored as float64 bits"
RAW = -1
MAX_SCALE = 9
_EXACT_INT = float(2**52)
ZLIB_LEVEL = 6

I64 = npt.NDArray[np.int64]


class CorruptChunk(ValueError):
    """Chunk data that cannot be decoded (bit rot the page-level checks did not see)."""

    def __init__(self, indices: Sequence[int]) -> None:
        super().__init__(f"undecodable chunk data at positions {list(indices)}")
        #: positions, in the rows given to unpack_many, of the chunks that cannot be decoded
        self.indices = tuple(indices)


@dataclass(frozen=True)
class PackedChunk:
    """One chunk ready for its row."""

    data: bytes
    n: int
    min_ts: int
    max_ts: int
    scale: int


@dataclass(frozen=True)
class Columns:
    """Decoded readings of one or more chunks, each chunk's readings in canonical (ts) order."""

    series: npt.NDArray[np.int32]
    ts_ms: I64
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint16]

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def select(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Columns:
        """The readings at `index` (an index array or mask)."""
        return Columns(self.series[index], self.ts_ms[index], self.value[index], self.quality[index])


def pack(
    series: npt.NDArray[np.int32],
    ts_ms: I64,
    value: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint16],
) -> PackedChunk:
    """Pack equal-length, non-empty columns (any order) into one chunk."""
    order = np.lexsort((ts_ms, series))
    series, ts_ms, value, quality = series[order], ts_ms[order], value[order], quality[order]
    base = int(ts_ms.min())
    scale, ints = _decimal_scale(value)
    records = np.empty(len(order), dtype=_STORED)
    records["series"] = series
    records["dts"] = np.diff(ts_ms - base, prepend=0)
    records["value"] = np.diff(ints, prepend=0) if scale != RAW else value.view(np.int64)
    records["quality"] = quality
    planes = records.view(np.uint8).reshape(len(records), SIZE).T.tobytes()
    return PackedChunk(zlib.compress(planes, ZLIB_LEVEL), len(records), base, int(ts_ms.max()), scale)


def _decimal_scale(value: npt.NDArray[np.float64]) -> tuple[int, I64]:
    """Smallest k such that value == round(value * 10**k) / 10**k bit for bit, or RAW."""
    if not np.all(np.isfinite(value)):
        return RAW, np.zeros(0, np.int64)
    bits = value.view(np.int64)
    for k in range(MAX_SCALE + 1):
        factor = 10.0**k
        scaled = np.round(value * factor)
        if np.any(np.abs(scaled) >= _EXACT_INT):
            break
        ints = scaled.astype(np.int64)
        # compare what decoding will compute, bit for bit (-0.0 and 0.0 differ here)
        if np.array_equal((ints.astype(np.float64) / factor).view(np.int64), bits):
            return k, ints
    return RAW, np.zeros(0, np.int64)


def unpack_many(rows: Sequence[tuple[int, int, int, bytes]]) -> Columns:
    """Decode chunks given as (n, min_ts, scale, data); readings of chunk after chunk, canonical order.

    The only per-chunk Python work is zlib.decompress; un-shuffling, the delta sums and the
    scaling are numpy over all chunks at once (a backlog is many small chunks). Raises
    CorruptChunk naming every chunk whose data does not decode.
    """
    if not rows:
        return _empty()
    try:
        return _unpack_many(rows)
    except (zlib.error, ValueError, OverflowError) as exc:
        bad = [i for i, row in enumerate(rows) if not _decodes(row)]
        raise CorruptChunk(bad or range(len(rows))) from exc


def _decodes(row: tuple[int, int, int, bytes]) -> bool:
    try:
        _unpack_many([row])
    except (zlib.error, ValueError, OverflowError):
        return False
    return True


def _unpack_many(rows: Sequence[tuple[int, int, int, bytes]]) -> Columns:
    counts = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    bases = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    scales = np.fromiter((r[2] for r in rows), np.int64, len(rows))
    parts = [zlib.decompress(r[3]) for r in rows]
    if not np.array_equal(np.fromiter(map(len, parts), np.int64, len(parts)), counts * SIZE):
        raise ValueError("chunk data does not match its reading count")
    if np.any(scales > MAX_SCALE) or np.any(scales < RAW):
        raise ValueError("chunk scale out of range")
    raw = np.frombuffer(b"".join(parts), np.uint8)
    chunk_of = np.repeat(np.arange(len(rows)), counts)
    starts = np.cumsum(counts) - counts
    records = _unshuffle(raw, starts, counts, chunk_of).view(_STORED)[:, 0]
    ts = bases[chunk_of] + _sums_per_chunk(records["dts"], starts, chunk_of)
    value = _values(records["value"], scales, starts, chunk_of)
    columns = Columns(
        records["series"].astype(np.int32),
        ts,
        value,
        records["quality"].astype(np.uint16),
    )
    return columns.select(_canonical(ts, chunk_of))


def _unshuffle(raw: npt.NDArray[np.uint8], starts: I64, counts: I64, chunk_of: I64) -> npt.NDArray[np.uint8]:
    """Records (n x SIZE bytes) from each chunk's byte planes, one plane at a time (little memory)."""
    plane_length = counts[chunk_of]
    at = starts[chunk_of] * (SIZE - 1) + np.arange(chunk_of.shape[0])
    out = np.empty((chunk_of.shape[0], SIZE), np.uint8)
    for plane in range(SIZE):
        out[:, plane] = raw[at]
        at += plane_length
    return out


def _sums_per_chunk(deltas: I64, starts: I64, chunk_of: I64) -> I64:
    """Running sums of `deltas` that restart at every chunk (int64 wrap-around cancels out)."""
    total = np.cumsum(deltas)
    before = np.where(starts > 0, total[np.maximum(starts - 1, 0)], 0)
    return total - before[chunk_of]


def _values(stored: I64, scales: I64, starts: I64, chunk_of: I64) -> npt.NDArray[np.float64]:
    scale = scales[chunk_of]
    raw = scale == RAW
    ints = _sums_per_chunk(np.where(raw, 0, stored), starts, chunk_of)
    value = ints.astype(np.float64) / (10.0 ** np.maximum(scale, 0))
    if raw.any():
        value[raw] = stored[raw].view(np.float64)
    return value


def _canonical(ts: I64, chunk_of: I64) -> npt.NDArray[np.intp]:
    """Order by (chunk, ts), stable: every chunk's readings in canonical order, chunk after chunk."""
    return np.lexsort((ts, chunk_of))


def _empty() -> Columns:
    return Columns(
        np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.uint16)
    )


def unpack(n: int, min_ts: int, scale: int, data: bytes) -> Columns:
    """Decode one chunk (canonical order)."""
    return unpack_many([(n, min_ts, scale, data)])
