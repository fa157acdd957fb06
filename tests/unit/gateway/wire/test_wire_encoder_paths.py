"""The encoder's fast paths give exactly what the format's definitions give, value by value.

They exist for speed (issue 17's encode rate) and must not move a single output byte: each is
compared with a per-value reading of docs/wire-format.md (or with numpy's own function) on any input.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire import huffman, lattice, readings, steps, varint

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
#: magnitudes of every width, so that each byte count and symbol class turns up
WIDE_INT64 = st.one_of(INT64, st.integers(-(2**15), 2**15), st.integers(-200, 200))


def _zigzag(value: int) -> int:
    return -2 * value - 1 if value < 0 else 2 * value


def _leb128(value: int) -> bytes:
    z, out = _zigzag(value), bytearray()
    while True:
        out.append((z & 0x7F) | (0x80 if z >> 7 else 0))
        z >>= 7
        if not z:
            return bytes(out)


def _symbol(value: int) -> tuple[int, int, int]:
    z = _zigzag(value)
    if z < huffman.DIRECT_SYMBOLS:
        return z, 0, 0
    lead = z.bit_length() - 1
    return (
        huffman.DIRECT_SYMBOLS + 4 * (lead - 4) + ((z >> (lead - 2)) & 3),
        lead - 2,
        z & ((1 << (lead - 2)) - 1),
    )


@settings(max_examples=300)
@given(st.lists(WIDE_INT64, max_size=64))
def test_varints_are_each_value_s_zigzag_leb128(values: list[int]) -> None:
    packed = varint.pack(np.array(values, dtype=np.int64))
    assert packed == b"".join(_leb128(v) for v in values)


@settings(max_examples=300)
@given(st.lists(WIDE_INT64, max_size=64))
def test_huffman_symbols_are_each_value_s_symbol_and_extra_bits(values: list[int]) -> None:
    symbols, extra_count, extra = huffman.symbols_of(np.array(values, dtype=np.int64))
    expected = [_symbol(v) for v in values]
    assert symbols.tolist() == [s for s, _, _ in expected]
    assert extra_count.tolist() == [c for _, c, _ in expected]
    assert extra.tolist() == [e for _, _, e in expected]
    assert (symbols.dtype, extra_count.dtype, extra.dtype) == (np.int64, np.int64, np.uint64)


@given(st.lists(st.integers(min_value=0, max_value=2**62), min_size=1, max_size=300))
def test_the_grid_search_median_is_numpy_s(moving: list[int]) -> None:
    sample = np.array(moving, dtype=np.int64)
    assert lattice._median(sample) == float(np.median(sample))


@given(
    st.lists(st.integers(min_value=0, max_value=2**40 - 1), min_size=1, max_size=64),
    st.lists(st.tuples(st.integers(4, 2**43), st.integers(1, lattice.MAX_DIVISOR)), min_size=1, max_size=8),
)
def test_grid_hit_rates_in_floats_are_the_integer_ones(
    moving: list[int], steps: list[tuple[int, int]]
) -> None:
    sample = np.array(moving, dtype=np.int64)
    a = np.array([[s] for s, _ in steps], dtype=np.int64)
    j = np.array([[d] for _, d in steps], dtype=np.int64)
    k = np.floor_divide(2 * sample[None, :] * j + a, 2 * a)
    residual = sample[None, :] - np.floor_divide(2 * k * a + j, 2 * j)
    assert lattice._hit_rates(sample, a, j).tolist() == np.mean(np.abs(residual) <= 1, axis=1).tolist()


@settings(max_examples=300)
@given(st.lists(WIDE_INT64, max_size=64))
def test_a_histogram_s_symbols_are_the_coded_ones(values: list[int]) -> None:
    column = np.array(values, dtype=np.int64)
    only = huffman.symbols_only(column)
    assert only.dtype == np.int64
    assert only.tolist() == [_symbol(v)[0] for v in values]


@given(st.lists(st.one_of(st.integers(0, 300), st.integers(0, 2**40)), min_size=1, max_size=300))
def test_the_grid_search_counts_distinct_step_sizes_as_numpy_does(moving: list[int]) -> None:
    sample = np.array(moving, dtype=np.int64)
    spread = int(sample.max())
    assert lattice._distinct(sample, spread) == np.unique(sample).size


@settings(max_examples=100)
@given(st.lists(st.lists(WIDE_INT64, min_size=1, max_size=40), max_size=12))
def test_series_are_grouped_by_their_own_histograms(parts: list[list[int]]) -> None:
    """One pass over all series' steps gives each series the group its histogram alone gives."""
    columns = [np.array(p, dtype=np.int64) for p in parts]
    alone = [np.bincount(huffman.symbols_only(c), minlength=huffman.ALPHABET) for c in columns]
    means = [float(np.dot(h, np.arange(huffman.ALPHABET))) / max(int(h.sum()), 1) for h in alone]
    groups = steps.group_series(columns)
    for i, j in itertools.combinations(range(len(columns)), 2):
        if int(means[i] // 2) == int(means[j] // 2):  # one class: always one group
            assert groups[i] == groups[j]


@given(st.lists(st.tuples(st.integers(0, 3), INT64), max_size=40), st.booleans())
def test_readings_are_ordered_as_lexsort_orders_them(rows: list[tuple[int, int]], presorted: bool) -> None:
    """Sorted input (the shortcut) and any other give lexsort's stable order, extreme times too."""
    rows = sorted(rows) if presorted else rows
    series = np.array([s for s, _ in rows], dtype=np.int32)
    ts = np.array([t for _, t in rows], dtype=np.int64)
    assert readings._reading_order(series, ts).tolist() == np.lexsort((ts, series)).tolist()
