"""The compiled coder's loader (gateway/wire/ctxmix.py) against the real library that `make setup` builds.

Round trips over the whole int64 range, what the three parameters buy on real hourly series, hostile
bytes that give only values or MalformedBatch (never a crash, never a write past the output: the decoded
array keeps its length), and a library that is missing, not a library, or of another ABI (the build
stand-in's ABI 1 included): CoderUnavailable naming how to rebuild.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import hourly_series
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.wire import ctxmix
from kernel.errors import MalformedBatch

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
PARAMS = st.tuples(st.sampled_from([0, 1, 24, 1440]), st.sampled_from([0, 1]), st.sampled_from([0, 37]))
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hourly(name: str, resolution: float) -> npt.NDArray[np.int64]:
    return hourly_series.hourly(name, resolution, 2000)


@settings(max_examples=100, deadline=None)
@given(st.lists(INT64, max_size=300), PARAMS)
def test_any_int64_column_round_trips(values: list[int], params: tuple[int, int, int]) -> None:
    column = np.array(values, dtype=np.int64)
    coded = ctxmix.encode(column, params)
    assert np.array_equal(ctxmix.decode(coded, len(column), params), column)


def test_hourly_temperature_steps_take_under_three_and_a_half_bits_a_value() -> None:
    # 0.1 degC steps of a year of Greensboro: an order-0 entropy near 5.4 bits (issue 17); 3.25 here
    steps = np.diff(hourly("greensboro-air_temperature", 0.1))
    assert len(ctxmix.encode(steps, (24, 0, 0))) * 8 < 3.5 * len(steps)


def test_the_period_is_what_lets_irradiance_follow_the_day() -> None:
    # levels of global irradiance: 799 bytes with the hour-of-day contexts, 900 without
    levels = hourly("sand-point-global_irradiance", 1.0)
    assert len(ctxmix.encode(levels, (24, 1, 0))) < 0.95 * len(ctxmix.encode(levels, (0, 1, 0)))


def test_the_modulus_lets_circular_steps_see_the_direction() -> None:
    directions = hourly("sand-point-wind_direction", 10.0)  # 37 positions, 0 and 360 both present
    steps = (np.diff(directions) + 18) % 37 - 18
    assert len(ctxmix.encode(steps, (24, 0, 37))) < len(ctxmix.encode(steps, (24, 0, 0)))


def test_the_empty_column_is_zero_bytes_and_decodes() -> None:
    assert ctxmix.encode(np.array([], dtype=np.int64), (0, 0, 0)) == b""
    assert len(ctxmix.decode(b"", 0, (0, 0, 0))) == 0


@FUZZ
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=250), PARAMS)
def test_random_bytes_decode_or_raise_malformed_batch(
    data: bytes, n: int, params: tuple[int, int, int]
) -> None:
    try:
        values = ctxmix.decode(data, n, params)
    except MalformedBatch:
        return
    assert len(values) == n


@FUZZ
@given(st.lists(INT64, min_size=1, max_size=100), PARAMS, st.data())
def test_truncated_columns_decode_to_n_values_or_are_malformed(
    values: list[int], params: tuple[int, int, int], data: st.DataObject
) -> None:
    coded = ctxmix.encode(np.array(values, dtype=np.int64), params)
    cut = data.draw(st.integers(min_value=0, max_value=len(coded) - 1))
    try:
        decoded = ctxmix.decode(coded[:cut], len(values), params)
    except MalformedBatch as exc:
        assert "outside int64" in str(exc)
        return
    assert len(decoded) == len(values)


def test_a_magnitude_beyond_int64_is_malformed() -> None:
    # zeros drive every decision to 1: the longest class, a minus sign, a mantissa of ones: -(2^64 - 1)
    with pytest.raises(MalformedBatch, match="outside int64"):
        ctxmix.decode(b"", 1, (0, 0, 0))
    assert ctxmix.decode(b"\xff" * 8, 3, (0, 0, 0)).tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "params",
    [
        (),
        (0,),
        (0, 0),
        (0, 0, 0, 0),
        (1441, 0, 0),
        (-1, 0, 0),
        (0, 2, 0),
        (0, -1, 0),
        (0, 0, -1),
        (0, 0, 2**32 + 1),
        (2**70, 0, 0),
        ("x", 0, 0),
    ],
)
def test_refused_parameters_are_malformed_when_decoding_and_a_value_error_when_encoding(
    params: tuple[object, ...],
) -> None:
    with pytest.raises(MalformedBatch):
        ctxmix.decode(b"\x02", 1, params)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="param"):
        ctxmix.encode(np.array([1], dtype=np.int64), params)  # type: ignore[arg-type]


def test_a_value_count_beyond_a_batch_is_refused_before_any_allocation() -> None:
    with pytest.raises(MalformedBatch, match="more than the 1000000"):
        ctxmix.decode(b"\x00" * 16, 10**12, (0, 0, 0))
    with pytest.raises(MalformedBatch):
        ctxmix.decode(b"", -1, (0, 0, 0))


def test_the_encoder_stops_at_its_capacity_and_says_so() -> None:
    # random int64 values take about 8 bytes each: 100 of them cannot fit in 32 bytes
    column = np.random.default_rng(5).integers(-(2**63), 2**63 - 1, size=100, dtype=np.int64)
    out = np.full(64, 0xAB, dtype=np.uint8)
    params = np.array([24, 0, 0], dtype=np.int64)
    assert ctxmix.library()._encode(column, 100, params, 3, out, 32) == ctxmix.CAPACITY
    assert (out[32:] == 0xAB).all()
    assert np.array_equal(ctxmix.decode(ctxmix.encode(column, (24, 0, 0)), 100, (24, 0, 0)), column)


def test_the_library_itself_refuses_a_count_beyond_its_bound_without_writing() -> None:
    # the C side's own bound (2^24 values), for callers other than this loader: a one-value buffer
    # would be overrun at once if the count were believed
    out = np.zeros(1, dtype=np.int64)
    params = np.zeros(3, dtype=np.int64)
    source = np.zeros(4, dtype=np.uint8)
    assert ctxmix.library()._decode(source, 4, 2**24 + 1, params, 3, out) == -2
    assert ctxmix.library()._encode(out, 2**24 + 1, params, 3, source, 4) == -2
    assert out.tolist() == [0]


def test_the_selftest_line_names_the_library_and_its_abi() -> None:
    line = ctxmix.self_check()
    assert str(ctxmix.LIBRARY) in line
    assert f"ABI {ctxmix.ABI}" in line
    assert "round-trip" in line


def test_a_missing_library_says_how_to_rebuild(tmp_path: Path) -> None:
    missing = tmp_path / "_ctxmix.so"
    with pytest.raises(ctxmix.CoderUnavailable, match="make setup") as caught:
        ctxmix.load(missing)
    assert str(missing) in str(caught.value)
    with pytest.raises(ctxmix.CoderUnavailable, match="make setup"):
        ctxmix.self_check(missing)


def test_a_file_that_is_not_a_library_is_unavailable(tmp_path: Path) -> None:
    broken = tmp_path / "_ctxmix.so"
    broken.write_bytes(b"\x7fELF truncated by a full SD card")
    with pytest.raises(ctxmix.CoderUnavailable, match="cannot be used"):
        ctxmix.load(broken)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_a_library_of_another_abi_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "other.c"
    source.write_text(
        "long ctxmix_abi(void) { return 1; }\n"
        "long ctxmix_encode(void) { return -2; }\n"
        "long ctxmix_decode(void) { return -2; }\n"
    )
    other = tmp_path / "_ctxmix.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(other), str(source)], check=True)
    with pytest.raises(ctxmix.CoderUnavailable, match="has ABI 1, this gateway needs 2"):
        ctxmix.load(other)
