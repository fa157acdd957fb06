"""The compiled coder's loader (gateway/wire/ctxmix.py) against the real library that `make setup` builds.

Round trips over the whole int64 range, hostile bytes that give only MalformedBatch (never a crash, never
a write past the output: the decoded array keeps its length), and a library that is missing, not a
library, or of another ABI: CoderUnavailable naming how to rebuild.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.wire import ctxmix
from kernel.errors import MalformedBatch

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ORDERS = st.sampled_from([(0,), (1,), (2,)])
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=100, deadline=None)
@given(st.lists(INT64, max_size=300), ORDERS)
def test_any_int64_column_round_trips(values: list[int], params: tuple[int]) -> None:
    column = np.array(values, dtype=np.int64)
    coded = ctxmix.encode(column, params)
    assert np.array_equal(ctxmix.decode(coded, len(column), params), column)


def test_the_order_parameter_is_what_makes_a_ramp_small() -> None:
    # a counter that steps by 1000: one varint of 2 bytes a value as they are, 1 byte as deltas, 0 beyond
    ramp = np.arange(1_000_000, 1_500_000, 1000, dtype=np.int64)
    sizes = [len(ctxmix.encode(ramp, (order,))) for order in (0, 1, 2)]
    assert sizes[0] > sizes[1] > sizes[2]
    assert sizes[2] == len(ramp) + 3  # the first value (3 bytes) and the first delta (2), then zeros


def test_the_empty_column_is_zero_bytes_and_decodes() -> None:
    assert ctxmix.encode(np.array([], dtype=np.int64), (1,)) == b""
    assert len(ctxmix.decode(b"", 0, (1,))) == 0


@FUZZ
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=250), ORDERS)
def test_random_bytes_decode_or_raise_malformed_batch(data: bytes, n: int, params: tuple[int]) -> None:
    try:
        values = ctxmix.decode(data, n, params)
    except MalformedBatch:
        return
    assert len(values) == n
    assert ctxmix.encode(values, params) == data  # accepted bytes are exactly the canonical coding


@FUZZ
@given(st.lists(INT64, min_size=1, max_size=100), ORDERS, st.data())
def test_truncated_or_extended_columns_are_malformed(
    values: list[int], params: tuple[int], data: st.DataObject
) -> None:
    coded = ctxmix.encode(np.array(values, dtype=np.int64), params)
    cut = data.draw(st.integers(min_value=0, max_value=len(coded) - 1))
    with pytest.raises(MalformedBatch, match="ends inside a value"):
        ctxmix.decode(coded[:cut], len(values), params)
    with pytest.raises(MalformedBatch, match="bytes left"):
        ctxmix.decode(coded + b"\x00", len(values), params)


def test_a_varint_longer_than_64_bits_is_malformed() -> None:
    with pytest.raises(MalformedBatch, match="longer than 64 bits"):
        ctxmix.decode(b"\xff" * 9 + b"\x02", 1, (0,))
    with pytest.raises(MalformedBatch, match="longer than 64 bits"):
        ctxmix.decode(b"\x80" * 11, 1, (0,))


@pytest.mark.parametrize("params", [(), (3,), (-1,), (1, 1), (2**70,), ("x",)])
def test_refused_parameters_are_malformed_when_decoding_and_a_value_error_when_encoding(
    params: tuple[object, ...],
) -> None:
    with pytest.raises(MalformedBatch):
        ctxmix.decode(b"\x02", 1, params)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="param"):
        ctxmix.encode(np.array([1], dtype=np.int64), params)  # type: ignore[arg-type]


def test_a_value_count_beyond_a_batch_is_refused_before_any_allocation() -> None:
    with pytest.raises(MalformedBatch, match="more than the 1000000"):
        ctxmix.decode(b"\x00" * 16, 10**12, (0,))
    with pytest.raises(MalformedBatch):
        ctxmix.decode(b"", -1, (0,))


def test_the_selftest_line_names_the_library_and_its_abi() -> None:
    line = ctxmix.self_check()
    assert str(ctxmix.LIBRARY) in line
    assert "ABI 1" in line
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
        "long ctxmix_abi(void) { return 2; }\n"
        "long ctxmix_encode(void) { return -2; }\n"
        "long ctxmix_decode(void) { return -2; }\n"
    )
    other = tmp_path / "_ctxmix.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(other), str(source)], check=True)
    with pytest.raises(ctxmix.CoderUnavailable, match="has ABI 2, this gateway needs 1"):
        ctxmix.load(other)
