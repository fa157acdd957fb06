"""Method 7 of format version 5 (section 4): method 1's symbols coded by PPMd or brotli, their
extra bits raw: exact round trips, when the writer picks it, and bounded decoding of hostile columns."""

from __future__ import annotations

import brotli
import numpy as np
import numpy.typing as npt
import pyppmd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.wire import huffman, intcol, modelled, modelled_symbols
from kernel.errors import MalformedBatch

INT64 = st.integers(-(2**63), 2**63 - 1)
CODERS = [modelled_symbols.CODER_BROTLI, 2, 3]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(INT64, max_size=400), st.integers(1, 40), st.sampled_from(CODERS))
def test_any_integers_in_any_layout_come_back_exactly(values: list[int], period: int, coder: int) -> None:
    ints = np.array(values, dtype=np.int64)
    packed = modelled_symbols.pack(ints, period, coder)
    assert packed[0] == modelled_symbols.METHOD_MODELLED_SYMBOLS
    assert intcol.unpack(packed, ints.size).tolist() == values


def _hourly_dust(days: int, seed: int) -> npt.NDArray[np.int64]:
    """Steps of an hourly dust concentration at 1 ug/m3 that drifts in long episodes: wide steps
    (often beyond 63, two varint bytes) whose low bits are noise and whose magnitude persists."""
    rng = np.random.default_rng(seed)
    scale = np.repeat(rng.choice([4.0, 30.0, 150.0], days * 2), 12)  # half-day episodes
    return np.round(rng.laplace(0, scale)).astype(np.int64)


def test_wide_hourly_steps_take_method_7_and_are_smaller_than_every_other_method() -> None:
    steps = _hourly_dust(200, seed=1)
    column = intcol.pack(steps, period=24)
    assert column[0] == modelled_symbols.METHOD_MODELLED_SYMBOLS
    others = [
        intcol.pack_huffman(steps),
        modelled.pack_ppmd(steps),
        modelled.pack_brotli(steps),
        modelled.pack_brotli(steps, 24),
    ]
    assert len(column) < min(len(c) for c in others)
    assert np.array_equal(intcol.unpack(column, steps.size), steps)


def test_method_7_is_not_tried_without_a_day_layout() -> None:
    """One-minute steps (the agent's usual batches): the time goes to other candidates."""
    steps = _hourly_dust(50, seed=1)  # 1,200 steps: not two days of one-minute readings
    assert intcol.pack(steps, period=1440)[0] != modelled_symbols.METHOD_MODELLED_SYMBOLS


def _column(symbols: bytes, bits: bytes, count: int, coder: int = 2, period: int = 1) -> bytes:
    if coder == modelled_symbols.CODER_BROTLI:
        stream = brotli.compress(symbols)
    else:
        encoder = pyppmd.Ppmd7Encoder(coder, modelled.PPMD_MEMORY)
        stream = encoder.encode(symbols) + encoder.flush(endmark=False)
    head = bytes([7]) + huffman.uvarint(count) + huffman.uvarint(period) + bytes([coder])
    return head + huffman.uvarint(len(stream)) + stream + bits


@pytest.mark.parametrize(
    ("column", "count", "error"),
    [
        (_column(bytes([3] * 10), b"", 10, coder=1), 10, "coder"),
        (_column(bytes([3] * 10), b"", 10, coder=17), 10, "coder"),
        (_column(bytes([3] * 10), b"", 10, period=0), 10, "period"),
        (_column(bytes([3] * 10), b"\x00", 10), 10, "extra bits"),  # direct symbols: no extra bits
        (_column(bytes([16] * 8), b"\x00", 8), 8, "extra bits"),  # 8 x 2 bits need 2 bytes
        (_column(bytes([3] * 9), b"", 10, coder=0), 10, "symbols"),  # one symbol short
        (_column(bytes(100_000), b"", 10, coder=0), 10, "symbols"),  # brotli expanding past the count
        (_column(bytes([3] * 10), b"", 10)[:-3], 10, ""),  # PPMd stream cut short
        (bytes([7]) + huffman.uvarint(10) + b"\x01\x02" + huffman.uvarint(1000) + b"\x00", 10, "past"),
    ],
)
def test_a_malformed_method_7_column_is_refused(column: bytes, count: int, error: str) -> None:
    with pytest.raises(MalformedBatch, match=error or None):
        intcol.unpack(column, count)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.integers(1, 3), st.sampled_from(CODERS), st.integers(0, 2000))
def test_hostile_method_7_columns_decode_to_their_count_or_are_malformed(
    tail: bytes, period: int, coder: int, count: int
) -> None:
    """Any bytes after a plausible head: the stated count of integers, or MalformedBatch; nothing
    else escapes, and nothing beyond the count is decoded."""
    head = bytes([7]) + huffman.uvarint(count) + huffman.uvarint(period) + bytes([coder])
    for column in (head + huffman.uvarint(len(tail)) + tail, head + tail):
        try:
            values = intcol.unpack(column, count)
        except MalformedBatch:
            continue
        assert values.size == count
