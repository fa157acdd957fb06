"""Value steps of quantised series: plain steps in coding groups, or grid multiples (`lattice`).

A batch mixes series whose steps differ by orders of magnitude (a temperature at 0.01 degC, a
pressure at 0.00001 kPa); one Huffman table for all would fit none. Series whose steps have similar
statistics share a group, and each group gets its own integer column and table. The grouping
is an encoder choice: start from classes of similar mean symbol, then merge neighbouring classes
while the estimated size (entropy plus table) shrinks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.wire import ctxmix, huffman, intcol, lattice, mixing, modelled, predict
from gateway.wire.scale import Scale
from kernel.errors import MalformedBatch

# keys of the readings map that hold value steps (docs/wire-format.md, 3.2.3, 3.2.4 and 3.2.8)
STEPS, LATTICES, GRID_STEPS, GROUPS, PREDICTORS = 3, 7, 8, 9, 10
#: the readings-map keys that differ between the chosen and the plain coding (with timestamps, 2)
CHOSEN_KEYS = frozenset({2, STEPS, LATTICES, GRID_STEPS, GROUPS, PREDICTORS})

IntArray = npt.NDArray[np.int64]
#: a series' predictor in key 10: an integer (previous value, linear, a period, the level) or the
#: circle [M, a] of circular steps
Predictor = int | list[int]
#: what naming a circle costs in key 10 (about 5 bytes of CBOR, and the key): a circle must save
#: more (hourly relative humidity, 0..85 around 62, saved 3 bytes in the column, lost 4 in the batch)
_CIRCLE_COST = 8
#: the estimated cost of one more table in bits (a table of a few dozen nibbles plus headers)
_TABLE_BITS = 200
#: the levels tried as residuals stay within this of the series' first value
_LEVEL_REACH = 255
#: levels are measured in full when PPMd over their first 1,024 takes less than 1.12 times what it
#: takes over the residuals': the model learns levels more slowly, so the sample understates them
#: (wind direction: 1.007 and 1.097 on the sample, 0.956 and 0.942 on the whole; hourly wind speed
#: 0.875 and 0.836; relative humidity, which lost, 1.16-1.17; temperatures and pressure 1.39-1.50)
_LEVEL_SAMPLE = 1024
_LEVEL_GAIN = 1.12


def encode_steps(
    delta: IntArray,
    starts: IntArray,
    counts: IntArray,
    scales: list[Scale],
    intervals_ms: list[float],
    plain: bool = False,
) -> dict[int, Any]:
    """The readings-map entries for the value steps of every quantised series.

    `intervals_ms` is each series' typical reading interval (it proposes the daily predictor);
    `plain` puts every series' steps into one varint column.
    """
    stepped = [
        (s, delta[start + 1 : start + count])
        for s, (start, count) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True))
        if scales[s] is not None and count >= 2
    ]
    if plain:
        return _plain_entries([d for _, d in stepped], [predict.PREVIOUS] * len(stepped), plain=True)
    predictors = [predict.choose(d, intervals_ms[s]) for s, d in stepped]
    grids = [lattice.find_step(d) for _, d in stepped]
    entries, on_grid = _grid_entries(stepped, grids, predictors)
    rest = [i for i in range(len(stepped)) if i not in on_grid]
    periods = [predict.day_period(intervals_ms[stepped[i][0]]) for i in rest]
    entries.update(
        _plain_entries(
            [stepped[i][1] for i in rest], [predictors[i] for i in rest], plain=False, periods=periods
        )
    )
    return entries


def _grid_entries(
    stepped: list[tuple[int, IntArray]], grids: list[tuple[int, int]], predictors: list[int]
) -> tuple[dict[int, Any], set[int]]:
    """Keys 7 and 8 for the series on a grid, unless zstd over their plain residuals is smaller
    (a periodic series on a grid repeats itself, which the joint Huffman symbols hide: 7 %)."""
    on_grid = [i for i, grid in enumerate(grids) if grid != (1, 1)]
    if not on_grid:
        return {}, set()
    split = [lattice.split(stepped[i][1], *grids[i]) for i in on_grid]
    column = lattice.pack_steps(_concat([k for k, _ in split]), _concat([r for _, r in split]))
    residuals = _concat([predict.residuals(stepped[i][1], predictors[i]) for i in on_grid])
    if len(column) >= intcol.quick_size(intcol.pack_planes(residuals)):
        return {}, set()
    # a grid hides the context between consecutive steps as Huffman does (hourly wind speed in
    # knots at Greensboro: grid 2,950 bytes, PPMd over the plain steps 2,806); only a grid column
    # within reach of the context-modelled methods is measured against them (NEON air pressure, at
    # 7 bits a step, would pay a fifth of its encoding time to learn that its grid stays)
    if len(column) * 8 <= intcol.MODELLED_BITS * residuals.size and len(column) >= intcol.body_size(
        intcol.pack(residuals)
    ):
        return {}, set()
    lattices = [[stepped[i][0], *grids[i]] for i in on_grid]
    return {LATTICES: lattices, GRID_STEPS: column}, set(on_grid)


def _plain_entries(
    steps: list[IntArray], predictors: list[int], plain: bool, periods: list[int] | None = None
) -> dict[int, Any]:
    """Keys 3, 9 and 10: residuals in coding groups (one group of varints if plain).

    `periods` are the series' readings per day: a group whose series share one proposes it as
    the layout period of its column (section 4, methods 5 to 7) when each has two days of
    steps (rows of a period shorter than a series would mix series).
    """
    if not steps:
        return {}
    residuals = [predict.residuals(d, p) for d, p in zip(steps, predictors, strict=True)]
    groups = [0] * len(steps) if plain else group_series(residuals)
    day = periods or [1] * len(steps)
    chosen: list[Predictor] = list(predictors)
    columns = []
    for group in range(max(groups) + 1):
        members = [i for i, g in enumerate(groups) if g == group]
        shared = {day[i] for i in members}
        period = shared.pop() if len(shared) == 1 else 1
        period = period if all(steps[i].size >= 2 * period for i in members) else 1
        column = intcol.pack(_concat([residuals[i] for i in members]), plain, period)
        # levels pay only through a context model: tried where one already won the residuals
        modelled_won = column[0] in intcol.MODELLED_METHODS
        if modelled_won and all(_bounded_level(steps[i]) for i in members):
            column, instead = _bounded_column(
                column, [steps[i] for i in members], [residuals[i] for i in members], period
            )
            for i, predictor in zip(members, instead, strict=True):
                chosen[i] = predictor if predictor is not None else chosen[i]
        if not plain and modelled.has_layout(sum(steps[i].size for i in members), period):
            column, instead = _mixed_column(
                column, [chosen[i] for i in members], [steps[i] for i in members], period
            )
            for i, predictor in zip(members, instead, strict=True):
                chosen[i] = predictor if predictor is not None else chosen[i]
        columns.append(column)
    entries: dict[int, Any] = {STEPS: columns}
    if max(groups) > 0:
        entries[GROUPS] = groups
    if any(chosen):
        entries[PREDICTORS] = chosen
    return entries


def _bounded_level(steps: IntArray) -> bool:
    """Whether a series' level stays within one byte of its first value, so that a context model
    sees levels as single symbols: wind speed and direction, which return to the same few values
    (hourly wind speed in knots at Greensboro: PPMd over the steps 2,806 bytes, over the levels
    2,346). A wandering series (a temperature at 0.1 degC) is not tried."""
    level = predict.residuals(steps, predict.LEVEL)
    return steps.size >= intcol.MODELLED_FROM and int(np.abs(level).max(initial=0)) <= _LEVEL_REACH


def _bounded_column(
    column: bytes, steps: list[IntArray], residuals: list[IntArray], period: int
) -> tuple[bytes, list[Predictor | None]]:
    """The smallest of a group's column, its levels' and its circular steps' (3.2.8), and the
    predictors that go with it (None: as chosen before).

    Circular steps: a wind vane at 10 degrees reads 0..36 (0 calm, 36 north), and veering from
    360 to 10 degrees is a step of 2 round those 37 values, not -35 (column: greensboro wind
    direction as levels 3,117 bytes, circular steps 2,996; sand-point 2,575 -> 2,521).
    """
    best: tuple[bytes, list[Predictor | None]] = (column, [None] * len(steps))
    level = _level_column(steps, residuals, period)
    if level is not None and intcol.body_size(level) < intcol.body_size(column):
        best = (level, [predict.LEVEL] * len(steps))
    circles = [predict.circle_of(d) for d in steps]
    wrapped = _concat([predict.circular_residuals(d, m) for d, (m, _) in zip(steps, circles, strict=True)])
    # where no step wraps, the circular residuals are the steps: nothing to measure (the NEON
    # batches' bounded series never wrap)
    if all(m >= 2 for m, _ in circles) and not np.array_equal(wrapped, _concat(steps)):
        circular = intcol.pack(wrapped, period=period)
        if intcol.body_size(circular) + _CIRCLE_COST * len(steps) < intcol.body_size(best[0]):
            best = (circular, [[m, a] for m, a in circles])
    return best


def _mixed_column(
    column: bytes, predictors: list[Predictor], steps: list[IntArray], period: int
) -> tuple[bytes, list[Predictor | None]]:
    """The smallest of a group's column and method 8 (context mixing) over its steps, its levels and,
    where its series share one circle, its circular steps, with the predictors that go with it.

    Tried only where the day layout applies (series read so seldom that a batch holds two of their
    days: the agent's one-minute batches never pay the coder's 0.6 us per integer), and instead of
    the earlier predictors' residuals: the coder's own contexts see the same hour of the day before,
    and it models levels better than the other methods do (greensboro irradiance: modelled symbols
    by the day over the daily predictor's residuals 3,896 bytes, context mixing over the levels
    3,618; greensboro air temperature, PPMd over the steps 2,730, context mixing 2,232).
    """
    circles = [predict.circle_of(d) for d in steps]
    cost = _CIRCLE_COST * len(steps) if all(isinstance(p, list) for p in predictors) else 0
    best: tuple[bytes, list[Predictor | None]] = (column, [None] * len(steps))
    size = intcol.body_size(column) + cost
    levels = _concat([predict.residuals(d, predict.LEVEL) for d in steps])
    candidates: list[tuple[IntArray, int, int, list[Predictor | None]]] = [
        (_concat(steps), mixing.STEPS, 0, [predict.PREVIOUS] * len(steps)),
        (levels, mixing.LEVELS, 0, [predict.LEVEL] * len(steps)),
    ]
    moduli = {m for m, _ in circles}
    modulus = moduli.pop() if len(moduli) == 1 else 0
    if 2 <= modulus <= predict.MAX_MODULUS:
        wrapped = _concat([predict.circular_residuals(d, modulus) for d in steps])
        if not np.array_equal(wrapped, candidates[0][0]):  # no step wraps: the steps' candidate
            candidates.append((wrapped, mixing.STEPS, modulus, [[m, a] for m, a in circles]))
    day = period if period <= mixing.MAX_PERIOD else 0  # the coder's phase contexts end there
    for ints, history, circle, named in candidates:
        try:
            mixed = mixing.pack(ints, day, history, circle)
        except ctxmix.CoderUnavailable:
            return best  # a broken install (`gateway selftest` names it): methods 0-7 still serve
        paid = len(mixed) + (_CIRCLE_COST * len(steps) if circle else 0)
        if paid < size:
            best, size = (mixed, named), paid
    return best


def _level_column(steps: list[IntArray], residuals: list[IntArray], period: int) -> bytes | None:
    """The group's levels packed, unless PPMd over a sample of them shows they cannot win.

    The sample (the column's first _LEVEL_SAMPLE integers) spares the full measurement where
    levels lose: packing them in full took a tenth of the NEON benchmark's encoding time.
    """
    levels = _concat([predict.residuals(d, predict.LEVEL) for d in steps])
    head = _concat(residuals)[:_LEVEL_SAMPLE]
    if len(modelled.pack_ppmd(levels[: head.size])) >= _LEVEL_GAIN * len(modelled.pack_ppmd(head)):
        return None
    return intcol.pack(levels, period=period)


def group_series(parts: list[IntArray]) -> list[int]:
    """A coding group number (0, 1, ...) for each series' steps."""
    # every series' histogram from one pass over all steps (a batch of 10 series: 60 numpy calls
    # fewer, a tenth of the grouping's time)
    owner = np.repeat(np.arange(len(parts)), [p.size for p in parts])
    symbols = huffman.symbols_only(_concat(parts))
    table = np.bincount(owner * huffman.ALPHABET + symbols, minlength=len(parts) * huffman.ALPHABET)
    histograms: list[IntArray] = list(table.astype(np.int64).reshape(len(parts), huffman.ALPHABET))
    symbol_sums = (table.reshape(len(parts), huffman.ALPHABET) @ np.arange(huffman.ALPHABET)).tolist()
    totals = [int(h.sum()) for h in histograms]
    mean_symbol = [float(s) / max(t, 1) for s, t in zip(symbol_sums, totals, strict=True)]
    classes = sorted({int(m // 2) for m in mean_symbol})
    merged: list[IntArray] = []
    for c in classes:
        total = np.zeros(huffman.ALPHABET, dtype=np.int64)
        for h, m in zip(histograms, mean_symbol, strict=True):
            if int(m // 2) == c:
                total += h
        merged.append(total)
    members = [[c] for c in classes]
    while len(merged) > 1:
        savings = [
            _cost(merged[i]) + _cost(merged[i + 1]) - _cost(merged[i] + merged[i + 1])
            for i in range(len(merged) - 1)
        ]
        best = int(np.argmax(savings))
        if savings[best] <= 0:
            break
        merged[best : best + 2] = [merged[best] + merged[best + 1]]
        members[best : best + 2] = [members[best] + members[best + 1]]
    group_of = {c: g for g, cs in enumerate(members) for c in cs}
    return [group_of[int(m // 2)] for m in mean_symbol]


def decode_steps(body: dict[Any, Any], sid: IntArray, stepped: npt.NDArray[np.bool_], size: int) -> IntArray:
    """Value steps of every reading (0 where there is none): grouped plain ones and grid ones."""
    grids = _grids(body.get(LATTICES, []), size)
    on_grid = stepped & np.isin(sid, list(grids))
    plain = stepped & ~on_grid
    steps = _decode_plain(body, sid, plain)
    if not grids:
        return steps
    item = body.get(GRID_STEPS)
    if not isinstance(item, bytes):
        raise MalformedBatch("grid steps must be a byte string")
    k, residual = lattice.unpack_steps(item, int(on_grid.sum()))
    a_of, j_of = np.ones(size, dtype=np.int64), np.ones(size, dtype=np.int64)
    for s, (a, j) in grids.items():
        a_of[s], j_of[s] = a, j
    grid_sid = sid[on_grid]
    steps[on_grid] = lattice.on_grid(k, a_of[grid_sid], j_of[grid_sid]) + residual
    return steps


def _decode_plain(body: dict[Any, Any], sid: IntArray, plain: npt.NDArray[np.bool_]) -> IntArray:
    steps = np.zeros(sid.size, dtype=np.int64)
    if not plain.any():
        return steps
    series = np.unique(sid[plain])
    groups = body.get(GROUPS, [0] * series.size)
    columns = body.get(STEPS)
    if not isinstance(groups, list) or len(groups) != series.size:
        raise MalformedBatch("step groups must name one group per series with plain steps")
    if not isinstance(columns, list) or not all(isinstance(c, bytes) for c in columns):
        raise MalformedBatch("steps must be an array of integer columns")
    if not all(isinstance(g, int) and 0 <= g < len(columns) for g in groups):
        raise MalformedBatch("step group number outside the step columns")
    group_of = np.full(int(sid.max()) + 1, -1, dtype=np.int64)
    group_of[series] = groups
    group_at = np.where(plain, group_of[sid], -1)
    for g, column in enumerate(columns):
        mine = group_at == g
        steps[mine] = intcol.unpack(column, int(mine.sum()))
    _undo_predictors(body.get(PREDICTORS, [0] * series.size), series, sid, plain, steps)
    return steps


def _undo_predictors(
    predictors: object, series: IntArray, sid: IntArray, plain: npt.NDArray[np.bool_], steps: IntArray
) -> None:
    """Residuals back to steps, series by series (in place)."""
    if not isinstance(predictors, list) or len(predictors) != series.size:
        raise MalformedBatch("predictors must name one predictor per series with plain steps")
    if not all(_is_predictor(p) for p in predictors):
        raise MalformedBatch("a predictor must be an integer >= -1 or a circle [M, a]")
    where = np.flatnonzero(plain)
    bounds = [*np.searchsorted(sid[where], series, side="left").tolist(), where.size]
    for i, p in enumerate(predictors):
        mine = where[bounds[i] : bounds[i + 1]]
        if isinstance(p, list):
            steps[mine] = predict.circular_steps(steps[mine], p[0], p[1])
        elif p:
            steps[mine] = predict.steps_of(steps[mine], p)


def _is_predictor(p: object) -> bool:
    """An integer >= -1, or a circle [M, a] of two integers (checked where it is used)."""
    if isinstance(p, list):
        return len(p) == 2 and all(type(x) is int for x in p)
    return type(p) is int and p >= predict.LEVEL


def _grids(entries: object, size: int) -> dict[int, tuple[int, int]]:
    if not isinstance(entries, list):
        raise MalformedBatch("lattices must be an array")
    grids: dict[int, tuple[int, int]] = {}
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise MalformedBatch("a lattice must be [series, a, j]")
        s, a, j = entry
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in entry) or not (
            0 <= s < size and 1 <= a <= lattice.MAX_MAGNITUDE and 1 <= j <= lattice.MAX_DIVISOR
        ):
            raise MalformedBatch("a lattice must be [series, 1 <= a <= 2**40, 1 <= j <= 8]")
        grids[s] = (a, j)
    return grids


def _cost(histogram: IntArray) -> float:
    """Estimated bits of a group: order-0 entropy of its symbols plus one table."""
    used = histogram[histogram > 0].astype(np.float64)
    return float(-(used * np.log2(used / used.sum())).sum()) + _TABLE_BITS


def _scatter(n: int, mask: npt.NDArray[np.bool_], values: IntArray) -> IntArray:
    out = np.zeros(n, dtype=np.int64)
    out[mask] = values
    return out


def _concat(parts: list[IntArray]) -> IntArray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
