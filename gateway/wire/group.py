"""Verify and decode a group of batches at once: what a receiver's group commit needs.

`verify_group` gives, for every (message, key, gateway) of a group, exactly what `verify_message`
gives for it alone (the Batch, or the WireError it raises), faster: the readings of every batch
in the usual shape are decoded together, one set of numpy calls per column kind for the whole group
(the integer columns concatenated, one running sum with resets at every series start, one scale
multiply) instead of ~80 numpy calls per batch, which were most of a 100-reading batch's decoding.

Batches of another shape (values on a grid, predictors other than "previous") are decoded alone
by `decode_readings`; PPMd and brotli columns (version 5) are decoded one by one inside the group
path (`intcol.unpack_many` hands them to `intcol.unpack`); a version-6 readings map arrives with
its implied counts written back (`implied.restore_counts`, in `decode_body`), so it is read as
version 5's; a batch that fails anywhere in the
group path is verified again alone by `verify_message`, so its error is exactly the one that path
raises. Hostile input thus costs at most
twice the per-batch path, never a different verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.wire import intcol, steps
from gateway.wire.batch import Batch, ReadingColumns, SeriesInfo
from gateway.wire.body import DecodedBody, decode_body
from gateway.wire.catalogue import CatalogueLookup
from gateway.wire.cose import SignedMessage
from gateway.wire.readings import (
    EXCEPTIONS,
    FLOATS,
    QUALITY,
    TIMESTAMPS,
    PerTable,
    counts_and_heads,
    decode_readings,
    flagged,
    read_sparse,
    segment_cumsum,
    table_facts,
)
from gateway.wire.trusted_keys import kid_for
from gateway.wire.verify import batch_of, check_signer, verify_message
from kernel.errors import WireError

IntArray = npt.NDArray[np.int64]
#: what to verify: the parsed envelope, the signer's key, the gateway that key belongs to and how
#: that gateway's series catalogues are found (None: no catalogue known)
Item = tuple[SignedMessage, Ed25519PublicKey, str, CatalogueLookup | None]


def verify_group(items: Sequence[Item]) -> list[Batch | WireError]:
    """For each item, its verified Batch or the WireError `verify_message` raises for it."""
    results: list[Batch | WireError | None] = [None] * len(items)
    bodies: list[tuple[int, DecodedBody]] = []
    for i, (message, key, _, catalogues) in enumerate(items):
        try:
            message.verify(key)
            bodies.append((i, decode_body(message.payload, catalogues, readings=False)))
        except WireError:
            results[i] = _alone(items[i])
    deferred = [(i, b) for i, b in bodies if b.readings_deferred]
    readings = dict(
        zip(
            (i for i, _ in deferred),
            decode_readings_group([(b.readings_item, b.series, b.readings_origin_s) for _, b in deferred]),
            strict=True,
        )
    )
    for i, body in bodies:
        message, key, gateway_id, _ = items[i]
        if body.readings_deferred:
            columns = readings[i]
            if columns is None:
                results[i] = _alone(items[i])
                continue
            body.readings = columns
        try:
            check_signer(body, message, gateway_id)
            results[i] = batch_of(body, message, kid_for(key))
        except WireError as exc:
            results[i] = exc
    return [r if r is not None else _alone(item) for r, item in zip(results, items, strict=True)]


def _alone(item: Item) -> Batch | WireError:
    try:
        return verify_message(*item)
    except WireError as exc:
        return exc


@dataclass
class _Plan:
    """One batch's readings map checked as `decode_readings` checks it, its columns not yet decoded."""

    counts: list[int]
    series: Sequence[SeriesInfo]
    heads: list[int]
    live: int
    timestamps: bytes | None
    step_columns: list[bytes]
    step_counts: list[int]
    #: coding group of each series (-1 where it has no plain steps)
    group_of: list[int]
    floats: bytes
    exceptions: tuple[IntArray, bytes] | None
    quality: tuple[IntArray, npt.NDArray[np.uint16]] | None

    @property
    def size(self) -> int:
        return sum(self.counts)


def decode_readings_group(
    items: Sequence[tuple[object, Sequence[SeriesInfo], int]],
) -> list[ReadingColumns | None]:
    """`decode_readings(map, series, created_s)` of each item (no readings for an absent map), None for each
    that is malformed or, when the joint decoding fails, for all (then each is decoded alone)."""
    out: list[ReadingColumns | None] = [None] * len(items)
    plans: list[tuple[int, _Plan]] = []
    for i, (item, series, created_s) in enumerate(items):
        try:
            if item is None:
                out[i] = ReadingColumns.empty()
            elif (plan := _plan(item, series, created_s)) is not None:
                plans.append((i, plan))
            else:
                out[i] = decode_readings(item, series, created_s)
        except Exception:  # decoded alone later: that path raises the exact error
            continue
    for chunk in _chunks(plans):
        try:
            decoded = _decode_together([p for _, p in chunk])
        except Exception:  # some column is bad: each batch alone says which and why
            continue
        for (i, _), columns in zip(chunk, decoded, strict=True):
            out[i] = columns
    return out


#: readings decoded together at most: decoding takes ~250 bytes of transient memory a reading, so a
#: group of 64 batches of a million readings each (the most a batch may hold) must not be decoded in
#: one piece; 65,536 readings (~16 MB) hold 650 batches of 100, and a larger batch goes alone
JOINT_READINGS = 1 << 16


def _chunks(plans: list[tuple[int, _Plan]]) -> list[list[tuple[int, _Plan]]]:
    """Consecutive plans in runs of at most JOINT_READINGS readings (a larger one in a run of its own)."""
    chunks: list[list[tuple[int, _Plan]]] = []
    size = 0
    for entry in plans:
        if not chunks or size + entry[1].size > JOINT_READINGS:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += entry[1].size
    return chunks


def _plan(body: object, series: Sequence[SeriesInfo], created_s: int) -> _Plan | None:
    """The batch's columns, checked; None for a shape the group path does not take."""
    if not isinstance(body, dict) or not _usual_shape(body):
        return None
    counts, heads = counts_and_heads(body, series, created_s)
    _, quantised, _ = table_facts(series)
    q = quantised.tolist()
    live = sum(1 for c in counts if c > 0)
    if len(heads) != live + sum(1 for c, k in zip(counts, q, strict=True) if c > 0 and k):
        return None  # decoded alone, which raises the exact error
    n = sum(counts)
    timestamps = body.get(TIMESTAMPS)
    if timestamps is None and n == live:
        timestamps = intcol.pack_varints(np.zeros(0, np.int64))
    if not isinstance(timestamps, bytes):
        return None
    stepped = [s for s, (c, k) in enumerate(zip(counts, q, strict=True)) if k and c >= 2]
    columns, groups = _step_columns(body, len(stepped))
    group_of = [-1] * len(counts)
    step_counts = [0] * len(columns)
    for s, g in zip(stepped, groups, strict=True):
        group_of[s] = g
        step_counts[g] += counts[s] - 1
    floats = body.get(FLOATS, b"")
    if not isinstance(floats, bytes) or len(floats) != 8 * sum(
        c for c, k in zip(counts, q, strict=True) if not k
    ):
        return None
    return _Plan(
        counts, series, heads, live, timestamps, columns, step_counts, group_of, floats,
        _exceptions(body, n), _quality(body, n),
    )  # fmt: skip


#: the readings-map keys of versions 1-6 (docs/wire-format.md 3.2); a map with another key is
#: decoded alone
_KNOWN_KEYS = frozenset(range(11))


def _usual_shape(body: dict[Any, Any]) -> bool:
    """No grid steps and no predictor but "previous" (the shapes decoded together)."""
    predictors = body.get(steps.PREDICTORS, [])
    return (
        _KNOWN_KEYS.issuperset(body)
        and body.get(steps.LATTICES, []) == []
        and isinstance(predictors, list)
        and all(type(p) is int and p == 0 for p in predictors)
    )


def _step_columns(body: dict[Any, Any], stepped: int) -> tuple[list[bytes], list[int]]:
    if stepped == 0:
        return [], []
    groups = body.get(steps.GROUPS, [0] * stepped)
    columns = body.get(steps.STEPS)
    predictors = body.get(steps.PREDICTORS, [0] * stepped)
    if not (
        isinstance(groups, list)
        and len(groups) == stepped == len(predictors)
        and isinstance(columns, list)
        and all(isinstance(c, bytes) for c in columns)
        and all(type(g) is int and 0 <= g < len(columns) for g in groups)
    ):
        raise ValueError("step columns not as decode_steps wants them")
    return columns, groups


def _exceptions(body: dict[Any, Any], n: int) -> tuple[IntArray, bytes] | None:
    if EXCEPTIONS not in body:
        return None
    where, raw = read_sparse(body[EXCEPTIONS], n, "exceptions")
    if not isinstance(raw, bytes) or len(raw) != 8 * where.size:
        raise ValueError("exception values must be 8 bytes each")
    return where, raw


def _quality(body: dict[Any, Any], n: int) -> tuple[IntArray, npt.NDArray[np.uint16]] | None:
    return None if body.get(QUALITY) is None else flagged(body[QUALITY], n)


def _decode_together(plans: list[_Plan]) -> list[ReadingColumns]:
    """Every plan's readings with one set of numpy calls per column kind for all of them."""
    counts = np.array(list(chain.from_iterable(p.counts for p in plans)), dtype=np.int64)
    sizes = [p.size for p in plans]
    n = int(counts.sum())
    segment = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    live = counts > 0
    first = np.zeros(n, dtype=bool)
    first[starts[live]] = True
    facts = [_scaling(p.series) for p in plans]
    quantised_s, resolution_s, divisor_s, factor_s = (np.concatenate(f) for f in zip(*facts, strict=True))
    quantised = quantised_s[segment]
    t_heads, q_heads = _heads(plans)
    dod = np.zeros(n, dtype=np.int64)
    dod[~first] = intcol.unpack_many([p.timestamps or b"" for p in plans], [p.size - p.live for p in plans])
    delta = segment_cumsum(dod, starts, counts)
    delta[first] = t_heads
    ts = segment_cumsum(delta, starts, counts) * resolution_s[segment]
    d = _steps(plans, segment, first)
    d[first & quantised] = q_heads
    values = segment_cumsum(d, starts, counts).astype(np.float64) / divisor_s[segment] * factor_s[segment]
    values[~quantised] = np.frombuffer(b"".join(p.floats for p in plans), dtype="<f8")
    quality = np.zeros(n, dtype=np.uint16)
    _sparse_columns(plans, sizes, values, quality)
    offsets = np.cumsum([len(p.counts) for p in plans]) - [len(p.counts) for p in plans]
    sid = (segment - np.repeat(offsets, sizes)).astype(np.int32)
    bounds = np.cumsum([0, *sizes]).tolist()
    return [
        ReadingColumns(series=sid[a:b], ts_ms=ts[a:b], value=values[a:b], quality=quality[a:b])
        for a, b in pairwise(bounds)
    ]


def _heads(plans: list[_Plan]) -> tuple[IntArray, IntArray]:
    """Absolute first timestamps and first integers: each batch's heads summed from its own start."""
    t_parts, q_parts = [], []
    for p in plans:
        t_parts.append(p.heads[: p.live])
        q_parts.append(p.heads[p.live :])
    t = np.array(list(chain.from_iterable(t_parts)), dtype=np.int64)
    q = np.array(list(chain.from_iterable(q_parts)), dtype=np.int64)
    t_counts = np.array([len(x) for x in t_parts], dtype=np.int64)
    q_counts = np.array([len(x) for x in q_parts], dtype=np.int64)
    return (
        segment_cumsum(t, np.cumsum(t_counts) - t_counts, t_counts),
        segment_cumsum(q, np.cumsum(q_counts) - q_counts, q_counts),
    )


def _steps(plans: list[_Plan], segment: IntArray, first: npt.NDArray[np.bool_]) -> IntArray:
    """Value steps of every reading: each plain reading's from its series' group column."""
    d = np.zeros(segment.size, dtype=np.int64)
    column_base = np.cumsum([0, *(len(p.step_columns) for p in plans)]).tolist()
    column_of = np.array(
        [g + column_base[b] if g >= 0 else -1 for b, p in enumerate(plans) for g in p.group_of],
        dtype=np.int64,
    )
    reading_column = column_of[segment]
    where = np.flatnonzero((reading_column >= 0) & ~first)
    values = intcol.unpack_many(
        list(chain.from_iterable(p.step_columns for p in plans)),
        list(chain.from_iterable(p.step_counts for p in plans)),
    )
    # a column's values fill its series' plain readings in reading order, column after column
    d[where[np.argsort(reading_column[where], kind="stable")]] = values
    return d


def _sparse_columns(
    plans: list[_Plan], sizes: list[int], values: npt.NDArray[np.float64], quality: npt.NDArray[np.uint16]
) -> None:
    """Exceptions (raw float64 values that replace a quantised one) and quality flags, in place."""
    offset = 0
    for p, size in zip(plans, sizes, strict=True):
        if p.exceptions is not None:
            where, raw = p.exceptions
            values[where + offset] = np.frombuffer(raw, dtype="<f8")
        if p.quality is not None:
            where, flags = p.quality
            quality[where + offset] = flags
        offset += size


def _scaling_facts(series: Sequence[SeriesInfo]) -> tuple[npt.NDArray[Any], ...]:
    """(quantised, time resolution, divisor, factor) per series: value = q / divisor * factor is
    bit for bit `dequantise` (q / 10**k for k >= 0, q * 10**-k for k < 0, q * step for a float)."""
    scales, quantised, resolution = table_facts(series)
    divisor = [10.0**s if isinstance(s, int) and s >= 0 else 1.0 for s in scales]
    factor = [
        1.0 if s is None or (isinstance(s, int) and s >= 0) else 10.0**-s if isinstance(s, int) else s
        for s in scales
    ]
    return quantised, resolution, np.array(divisor), np.array(factor)


#: per series table: which series are quantised, time resolutions, divisors and factors
_scaling = PerTable(_scaling_facts)
