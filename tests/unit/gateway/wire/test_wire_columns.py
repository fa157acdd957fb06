"""Integer columns and predictors of format versions 3 to 5: exact round trips, choice by final size."""

from __future__ import annotations

import cbor2
import numpy as np
import numpy.typing as npt
import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.wire import (
    Keyring,
    ReadingColumns,
    SeriesInfo,
    encode_batch,
    intcol,
    modelled,
    predict,
    sign,
    verify_and_decode,
)
from gateway.wire.body import body_cbor
from kernel.errors import MalformedBatch

INT64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(INT64, max_size=300), st.sampled_from([-1, 0, 1, 2, 7, 24, 1000]))
def test_residuals_of_any_predictor_give_back_the_steps(values: list[int], predictor: int) -> None:
    steps = np.array(values, dtype=np.int64)
    residual = predict.residuals(steps, predictor)
    assert np.array_equal(predict.steps_of(residual, predictor), steps)


@settings(max_examples=60, deadline=None)
@given(st.lists(INT64, max_size=300))
def test_every_method_gives_back_the_column(values: list[int]) -> None:
    ints = np.array(values, dtype=np.int64)
    methods = (intcol.pack_planes, intcol.pack_huffman, intcol.pack_sparse, intcol.pack_lzma_planes)
    for packed in (intcol.pack(ints), *(method(ints) for method in methods)):
        assert np.array_equal(intcol.unpack(packed, ints.size), ints)


def test_a_column_of_repeated_patterns_is_left_to_zstd_and_is_smaller_after_it() -> None:
    rng = np.random.default_rng(3)
    day = rng.integers(-40, 40, 24)
    column = np.tile(day, 100)  # the same day again and again: zstd's matches see it, Huffman not
    packed = intcol.pack(column)
    assert packed[0] in (intcol.METHOD_VARINT, intcol.METHOD_PLANES)
    zstd = zstandard.ZstdCompressor(level=12)
    assert len(zstd.compress(packed)) < len(zstd.compress(intcol.pack_huffman(column)))


@pytest.mark.parametrize("nonzero", [0, 1, 40])
def test_a_nearly_constant_column_travels_sparse_and_is_smaller_after_zstd(nonzero: int) -> None:
    rng = np.random.default_rng(5)
    column = np.zeros(6000, np.int64)  # an hourly pressure that rarely moves, or regular timestamps
    column[rng.choice(column.size, nonzero, replace=False)] = rng.integers(-3, 4, nonzero) * 2 + 1
    column[:nonzero] *= 1000  # a rain gauge at 0.001 mm that counts whole millimetres
    packed = intcol.pack(column)
    assert packed[0] == intcol.METHOD_SPARSE
    assert np.array_equal(intcol.unpack(packed, column.size), column)
    assert intcol.final_size(packed) < intcol.final_size(intcol.pack_varints(column))


@pytest.mark.parametrize(
    "entries", [[-(2**63)], [-(2**63), -(2**63)], [2**63 - 1, -(2**63)], [2**62, -(2**62)]]
)
def test_a_sparse_column_of_extreme_entries_comes_back(entries: list[int]) -> None:
    column = np.zeros(100, np.int64)
    column[[3, 50, 99][: len(entries)]] = entries
    assert np.array_equal(intcol.unpack(intcol.pack_sparse(column), column.size), column)


def test_a_sparse_column_divides_out_the_common_factor_of_its_entries() -> None:
    column = np.zeros(6000, np.int64)
    column[::150] = np.tile([3000, -3000, 6000, -6000], 10)  # whole millimetres at 0.001 mm
    factored = intcol.pack_sparse(column)
    assert np.array_equal(intcol.unpack(factored, column.size), column)
    assert len(factored) < len(intcol.pack_sparse(column + (column != 0)))  # same shape, no factor


def _wandering_steps() -> npt.NDArray[np.int64]:
    noise = np.random.default_rng(6).normal(0, 1, 6000)
    steps = np.zeros(6000)
    for i in range(1, steps.size):  # slowly wandering steps: each depends on the one before
        steps[i] = 0.95 * steps[i - 1] + noise[i]
    return np.round(steps).astype(np.int64)


def test_lzma_planes_model_the_context_zstd_cannot() -> None:
    column = _wandering_steps()
    packed = intcol.pack_lzma_planes(column)
    assert np.array_equal(intcol.unpack(packed, column.size), column)
    assert len(packed) < min(
        intcol.final_size(intcol.pack_planes(column)),
        intcol.final_size(intcol.pack_varints(column)),
        len(intcol.pack_huffman(column)),
    )


def test_a_column_with_context_travels_as_ppmd_smaller_than_every_older_method() -> None:
    """Version 5: PPMd over the varints beats even the LZMA planes on correlated steps (method 4
    was the choice in version 4)."""
    column = _wandering_steps()
    packed = intcol.pack(column)
    assert packed[0] == modelled.METHOD_PPMD
    assert np.array_equal(intcol.unpack(packed, column.size), column)
    assert len(packed) < min(
        len(intcol.pack_lzma_planes(column)),
        intcol.final_size(intcol.pack_planes(column)),
        intcol.final_size(intcol.pack_varints(column)),
        len(intcol.pack_huffman(column)),
    )


def test_independent_values_travel_as_huffman() -> None:
    column = np.random.default_rng(4).geometric(0.3, 5000).astype(np.int64)
    assert intcol.pack(column)[0] == intcol.METHOD_HUFFMAN


def test_the_daily_predictor_is_chosen_for_a_daily_cycle() -> None:
    hours = np.arange(2000)
    level = np.round(500 * np.maximum(0, np.sin(2 * np.pi * (hours % 24 - 6) / 24)))
    assert predict.choose(np.diff(level).astype(np.int64), interval_ms=3_600_000) == 24


def test_linear_extrapolation_is_chosen_for_a_smooth_curve() -> None:
    q = np.round(100_000 * np.sin(np.arange(3000) / 300)).astype(np.int64)
    assert predict.choose(np.diff(q), interval_ms=60_000) == predict.LINEAR


@pytest.mark.parametrize(
    "column",
    [
        bytes([2, 3, 4]) + bytes(11),  # 3 values of 4 bytes need 12
        bytes([2, 3, 3]) + bytes(9),  # width 3
        bytes([2, 3]),  # width missing
        bytes([2, 2, 2, 1, 2]),  # 2 values of 2 bytes need 4
        bytes([3, 3, 2, 1, 4]),  # sparse: 2 nonzero entries need 4 varints, not 1
        bytes([3, 3, 4, 1, 0, 0, 0, 2, 2, 2, 2]),  # sparse: 4 nonzero entries of 3
        bytes([3, 3, 1, 1, 3, 2]),  # sparse: 3 zeros before the first entry of 3
        bytes([3, 3, 2, 1, 1, 1, 2, 2]),  # sparse: positions 1 and 3 of 3
        bytes([3, 3, 1, 1, 0x80]),  # sparse: a gap varint cut off
        bytes([3, 3, 1, 0, 0, 2]),  # sparse: factor 0
        bytes([5, 3, 2, 4]),  # no method 5
        bytes([4, 3, 3]) + intcol.pack_lzma_planes(np.arange(3))[3:],  # LZMA planes: width 3
        intcol.pack_lzma_planes(np.arange(3))[:-2],  # LZMA stream cut off
        intcol.pack_lzma_planes(np.arange(3)) + b"\0",  # stray byte after the end marker
        bytes([4, 2]) + intcol.pack_lzma_planes(np.arange(3))[2:],  # 3 values where 2 are declared
        bytes([4, 4]) + intcol.pack_lzma_planes(np.arange(3))[2:],  # 3 values where 4 are declared
        bytes([4, 3, 1, 0xFF, 0xFF, 0xFF]),  # not an LZMA stream
    ],
)
def test_malformed_byte_planes_are_refused(column: bytes) -> None:
    with pytest.raises(MalformedBatch):
        intcol.unpack_any(column)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=300))
def test_circular_steps_give_back_the_steps(levels: list[int]) -> None:
    """Predictor [M, a]: any series within M integers comes back exactly from its wrapped steps."""
    q = np.array(levels, dtype=np.int64)
    steps = np.diff(q)
    modulus, start = predict.circle_of(steps)
    assert modulus == int(q.max() - q.min()) + 1 and start == int(q[0] - q.min())
    assume(modulus >= 2)  # a constant series is no circle (the writer never names one)
    wrapped = predict.circular_residuals(steps, modulus)
    assert wrapped.size == 0 or int(np.abs(wrapped).max()) <= modulus // 2
    assert np.array_equal(predict.circular_steps(wrapped, modulus, start), steps)


def test_a_vane_crossing_north_takes_one_small_step() -> None:
    """0..36 tens of degrees: 360 -> 10 degrees is +2 on the circle of 37 values, not -35."""
    steps = np.diff(np.array([35, 36, 1, 2, 36, 0], dtype=np.int64))
    assert predict.circular_residuals(steps, 37).tolist() == [1, 2, 1, -3, 1]


def test_a_predictor_beyond_the_largest_period_is_refused() -> None:
    with pytest.raises(MalformedBatch):
        predict.steps_of(np.zeros(10, np.int64), predict.MAX_PERIOD + 1)


@pytest.mark.parametrize(
    "predictors",
    [
        [predict.MAX_PERIOD + 1],
        [-2],
        [True],
        [0, 0],
        "x",
        [[1, 0]],
        [[37, 37]],
        [[37, -1]],
        [[37]],
        [[37, 1.5]],
        [[predict.MAX_MODULUS + 1, 0]],
        [[2, 0]],
    ],
)  # -1: the level, [M, a]: a circle (v5); on a circle of 2 a residual is -1 or 0, and the column's
# steps of 1 are neither
def test_a_batch_naming_an_impossible_predictor_is_malformed(predictors: object) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    ring = Keyring()
    kid = ring.add("gw-p", key.public_key())
    body = encode_batch(
        gateway_id="gw-p",
        seq=1,
        created_ms=0,
        series=[SeriesInfo("s", "t", "Cel", 0.1, 1000)],
        readings=ReadingColumns(np.zeros(40), np.arange(40) * 1000, np.arange(40) * 0.1, np.zeros(40)),
    )
    fields = cbor2.loads(body_cbor(body))
    fields[5][10] = predictors
    with pytest.raises(MalformedBatch):
        verify_and_decode(sign(zstandard.ZstdCompressor().compress(cbor2.dumps(fields)), key, kid), ring)
