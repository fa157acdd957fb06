"""Context-modelled integer columns of format version 5 (methods 5 PPMd and 6 brotli, section 4):
exact round trips, the period layout, choice by size, and bounded decoding of hostile columns."""

from __future__ import annotations

import brotli
import numpy as np
import numpy.typing as npt
import pyppmd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.wire import (
    Keyring,
    ReadingColumns,
    SeriesInfo,
    encode_batch,
    huffman,
    intcol,
    kid_for,
    modelled,
    sign,
    varint,
    verify_and_decode,
)
from kernel.errors import MalformedBatch

INT64 = st.integers(-(2**63), 2**63 - 1)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _hourly_sun(days: int, seed: int) -> npt.NDArray[np.int64]:
    """Steps of an hourly irradiance-like series in W/m2: zero at night, a daily hump that varies."""
    rng = np.random.default_rng(seed)
    hour = np.arange(days * 24) % 24
    clear = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None) * 800
    cloud = np.repeat(rng.uniform(0.3, 1.0, days), 24)
    level = np.round(clear * cloud + (clear > 0) * rng.normal(0, 15, hour.size)).astype(np.int64)
    return np.diff(np.clip(level, 0, None))


@FUZZ
@given(st.lists(INT64, max_size=400), st.integers(1, 40), st.sampled_from([5, 6]))
def test_any_integers_in_any_layout_come_back_exactly(values: list[int], period: int, method: int) -> None:
    ints = np.array(values, dtype=np.int64)
    pack = modelled.pack_ppmd if method == modelled.METHOD_PPMD else modelled.pack_brotli
    packed = pack(ints, period)
    assert packed[0] == method
    assert intcol.unpack(packed, ints.size).tolist() == values


def test_the_period_layout_sends_full_rows_column_by_column_then_the_tail() -> None:
    ints = np.arange(10, dtype=np.int64)
    assert modelled.laid_out(ints, 3).tolist() == [0, 3, 6, 1, 4, 7, 2, 5, 8, 9]
    assert modelled.in_order(modelled.laid_out(ints, 3), 3).tolist() == list(range(10))
    assert modelled.laid_out(ints, 6).tolist() == list(range(10))  # fewer than two rows: in order


def test_correlated_steps_travel_as_ppmd_and_are_smaller_than_huffman() -> None:
    rng = np.random.default_rng(3)
    steps = np.zeros(3000, dtype=np.int64)
    for i in range(1, steps.size):  # a step repeats the one before three times in four
        steps[i] = steps[i - 1] if rng.random() < 0.75 else rng.integers(-6, 7)
    packed = intcol.pack(steps)
    assert packed[0] == modelled.METHOD_PPMD
    assert len(packed) < 0.8 * len(intcol.pack_huffman(steps))
    assert intcol.unpack(packed, steps.size).tolist() == steps.tolist()


def test_a_daily_column_is_laid_out_by_its_period_when_that_is_smaller() -> None:
    steps = _hourly_sun(120, seed=4)
    in_order = intcol.pack(steps)
    by_day = intcol.pack(steps, period=24)
    # method 7 (the steps' symbols modelled) carries its period where methods 5 and 6 do
    assert by_day[0] in (modelled.METHOD_PPMD, modelled.METHOD_BROTLI, 7)
    assert huffman.read_uvarint(by_day, 1 + len(huffman.uvarint(steps.size)))[0] == 24
    assert len(by_day) < 0.95 * len(in_order)
    assert intcol.unpack(by_day, steps.size).tolist() == steps.tolist()


def test_independent_steps_whose_huffman_code_is_exact_stay_huffman() -> None:
    """P(z) = 2^-(z+1): the Huffman code is the entropy, so no model can be smaller."""
    z = np.random.default_rng(5).geometric(0.5, 4000).astype(np.uint64) - np.uint64(1)
    steps = varint.unzigzag(z)
    assert intcol.pack(steps, period=24) == intcol.pack_huffman(steps)


def test_an_hourly_series_batch_uses_the_day_layout_and_decodes_exactly() -> None:
    levels = np.concatenate([[0], np.cumsum(_hourly_sun(100, seed=6))])
    levels = levels - min(0, int(levels.min()))
    ts = 1_764_000_000_000 + 3_600_000 * np.arange(levels.size)
    private = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
    ring = Keyring()
    ring.add("gw-sun", private.public_key())
    body = encode_batch(
        gateway_id="gw-sun",
        seq=1,
        created_ms=int(ts[0]),
        series=[SeriesInfo("pyrano-1", "global_irradiance", "W/m2", 1.0, 1000)],
        readings=ReadingColumns(
            series=np.zeros(levels.size, np.int64),
            ts_ms=ts,
            value=levels.astype(np.float64),
            quality=np.zeros(levels.size, np.uint16),
        ),
    )
    batch = verify_and_decode(sign(body, private, kid_for(private.public_key())), ring)
    assert batch.version == 6
    assert batch.readings.value.tolist() == levels.astype(np.float64).tolist()
    assert batch.readings.ts_ms.tolist() == ts.tolist()


def _ppmd_column(content: bytes, count: int, stated: int, order: int = 2, period: int = 1) -> bytes:
    encoder = pyppmd.Ppmd7Encoder(order, modelled.PPMD_MEMORY)
    stream = encoder.encode(content) + encoder.flush(endmark=False)
    head = bytes([5]) + huffman.uvarint(count) + huffman.uvarint(period) + bytes([order])
    return head + huffman.uvarint(stated) + stream


def test_a_ppmd_column_may_not_state_more_content_than_its_count_allows() -> None:
    content = bytes(100_000)  # 100,000 zero varints, but the column says it holds 10 integers
    with pytest.raises(MalformedBatch, match="cannot hold"):
        intcol.unpack(_ppmd_column(content, 10, len(content)), 10)


def test_a_ppmd_column_whose_stream_ends_early_is_malformed() -> None:
    column = _ppmd_column(bytes(range(64)) * 4, 256, 256)
    with pytest.raises(MalformedBatch):
        intcol.unpack(column[:-6], 256)


@pytest.mark.parametrize(
    ("order", "period", "error"),
    [(1, 1, "order"), (17, 1, "order"), (2, 0, "period"), (2, modelled.MAX_PERIOD + 1, "period")],
)
def test_a_modelled_column_outside_the_stated_ranges_is_malformed(
    order: int, period: int, error: str
) -> None:
    with pytest.raises(MalformedBatch, match=error):
        intcol.unpack(_ppmd_column(bytes(16), 16, 16, order=order, period=period), 16)


def test_a_brotli_bomb_stops_at_ten_bytes_per_declared_integer() -> None:
    bomb = brotli.compress(bytes(50_000_000), quality=5)  # 50 MB of zero varints in a few KiB
    column = bytes([6]) + huffman.uvarint(100) + huffman.uvarint(1) + bomb
    assert len(column) < 100_000
    with pytest.raises(MalformedBatch, match="within 1000 bytes"):
        intcol.unpack(column, 100)


def test_a_brotli_column_with_bytes_after_its_stream_is_malformed() -> None:
    column = modelled.pack_brotli(np.arange(50, dtype=np.int64))
    with pytest.raises(MalformedBatch):
        intcol.unpack(column + b"\x00", 50)


@FUZZ
@given(st.sampled_from([5, 6]), st.integers(0, 300), st.binary(max_size=300))
def test_random_modelled_columns_decode_or_are_malformed(method: int, count: int, tail: bytes) -> None:
    column = bytes([method]) + huffman.uvarint(count) + tail
    try:
        values = intcol.unpack(column, count)
    except MalformedBatch:
        return
    assert values.size == count


def test_a_modelled_column_stating_another_count_than_its_context_is_refused_before_decoding() -> None:
    column = _ppmd_column(bytes(1_000_000), 1_000_000, 1_000_000)  # a megabyte of zeros in 383 bytes
    assert len(column) < 1000
    with pytest.raises(MalformedBatch, match="holds 1000000 values, expected 10"):
        intcol.unpack(column, 10)


def _step_phrases(n: int, seed: int) -> npt.NDArray[np.int64]:
    """Steps that repeat a vocabulary of short shapes in random order (a duty cycle whose phases
    vary in length): brotli's matches see the shapes, an order-2 context sees two steps of one."""
    rng = np.random.default_rng(seed)
    vocabulary = [rng.integers(-6, 7, int(rng.integers(3, 9))) for _ in range(40)]
    phrases = [vocabulary[int(i)] for i in rng.integers(0, len(vocabulary), n)]
    return np.concatenate(phrases)[:n].astype(np.int64)


def test_brotli_in_order_is_chosen_where_a_day_layout_applies_and_it_is_smallest() -> None:
    """Hourly steps (24 a day, 125 days): brotli over the steps in order beats PPMd in order and
    both methods laid out by the day; the column says period 1 and decodes exactly."""
    ints = _step_phrases(3000, 7)
    column = intcol.pack(ints, period=24)
    assert column[0] == modelled.METHOD_BROTLI
    count, pos = huffman.read_uvarint(column, 1)
    assert count == ints.size and huffman.read_uvarint(column, pos)[0] == 1  # in order
    assert len(column) < min(len(modelled.pack_ppmd(ints)), len(modelled.pack_brotli(ints, 24)))
    assert np.array_equal(intcol.unpack(column, ints.size), ints)


def test_brotli_is_not_tried_without_a_day_layout() -> None:
    """One-minute steps (a day is 1,440 of them, more than half the column) are not given to
    brotli even where it would be smaller: at quality 11 it costs 30 times PPMd's time, which the
    agent's usual batches (600 one-minute readings a series) do not pay."""
    ints = _step_phrases(2000, 7)
    column = intcol.pack(ints, period=1440)
    assert column[0] != modelled.METHOD_BROTLI
    assert len(modelled.pack_brotli(ints)) < len(column)
