"""The C coder of method 8 against the reference written from the spec (ctxmix_reference.py).

Bit-exact both ways: the C library's bytes decoded by the reference and the reference's bytes by the C
library, on real hourly series (steps, levels, circular steps), on generated shapes and on hostile
bytes. The reference is slow, so every column here is a few hundred values at most.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import ctxmix_reference as reference
import hourly_series
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.wire import ctxmix
from kernel.errors import MalformedBatch

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PARAMS = st.tuples(st.sampled_from([0, 24]), st.sampled_from([0, 1]), st.sampled_from([0, 37]))
SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hourly(name: str, resolution: float) -> np.ndarray:
    return hourly_series.hourly(name, resolution, 300)


def circular_steps(levels: np.ndarray, modulus: int) -> np.ndarray:
    """Steps taken the short way round: -18..18 for 37 wind directions."""
    half = modulus // 2
    return (np.diff(levels) + half) % modulus - half


def assert_bit_exact(column: np.ndarray, params: tuple[int, int, int]) -> None:
    coded = ctxmix.encode(column, params)
    assert reference.encode(column.tolist(), params) == coded
    assert reference.decode(coded, len(column), params) == column.tolist()
    assert np.array_equal(ctxmix.decode(coded, len(column), params), column)


def temperature_steps() -> tuple[np.ndarray, tuple[int, int, int]]:
    return np.diff(hourly("greensboro-air_temperature", 0.1)), (24, 0, 0)


def irradiance_levels() -> tuple[np.ndarray, tuple[int, int, int]]:
    return hourly("sand-point-global_irradiance", 1.0), (24, 1, 0)


def wind_direction_steps() -> tuple[np.ndarray, tuple[int, int, int]]:
    return circular_steps(hourly("sand-point-wind_direction", 10.0), 37), (24, 0, 37)


def dust_steps() -> tuple[np.ndarray, tuple[int, int, int]]:
    return np.diff(hourly("soiling-site-pm2_5", 1e-6)), (0, 0, 0)


@pytest.mark.parametrize("series", [temperature_steps, irradiance_levels, wind_direction_steps, dust_steps])
def test_real_hourly_series_are_bit_exact_with_the_reference(series: object) -> None:
    column, params = series()  # type: ignore[operator]
    assert len(column) >= 299
    assert_bit_exact(column, params)


def shapes() -> st.SearchStrategy[list[int]]:
    small = st.integers(min_value=-3000, max_value=3000)
    constant = st.builds(lambda v, n: [v] * n, small, st.integers(1, 200))
    spikes = st.builds(
        lambda n, at, v: [v if i % at == 0 else 0 for i in range(n)],
        st.integers(1, 200),
        st.integers(1, 40),
        st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    )
    walk = st.builds(lambda steps: np.cumsum(steps).tolist(), st.lists(st.integers(-5, 5), max_size=200))
    extremes = st.lists(
        st.sampled_from([INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX]), max_size=40
    )
    anything = st.lists(st.integers(min_value=INT64_MIN, max_value=INT64_MAX), max_size=12)
    return st.one_of(constant, spikes, walk, extremes, anything)


@SLOW
@given(shapes(), PARAMS)
def test_generated_shapes_are_bit_exact_with_the_reference(
    values: list[int], params: tuple[int, int, int]
) -> None:
    assert_bit_exact(np.array(values, dtype=np.int64), params)


def decode_both(data: bytes, n: int, params: tuple[int, int, int]) -> None:
    """The C coder and the reference agree on any bytes: the same values, or both refuse."""
    try:
        values = ctxmix.decode(data, n, params)
    except MalformedBatch as exc:
        assert "outside int64" in str(exc)
        with pytest.raises(reference.OutOfRange):
            reference.decode(data, n, params)
        return
    assert len(values) == n
    assert reference.decode(data, n, params) == values.tolist()


@SLOW
@given(st.binary(max_size=120), st.integers(min_value=0, max_value=60), PARAMS)
def test_random_bytes_give_the_same_values_or_the_same_refusal(
    data: bytes, n: int, params: tuple[int, int, int]
) -> None:
    decode_both(data, n, params)


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 40, 80, -1])
def test_a_truncated_column_decodes_as_the_reference_does(cut: int) -> None:
    column, params = temperature_steps()
    coded = ctxmix.encode(column, params)
    assert len(coded) > 80
    decode_both(coded[:cut], len(column), params)


def test_the_spec_states_the_reference_constants() -> None:
    page = (Path(__file__).parents[4] / "docs" / "wire-format.md").read_text()
    section = page.split("### 4.1 The context-mixing coder", 1)[1].split("\n## ", 1)[0]
    table = section.split("T = ", 1)[1].split("```", 1)[0]
    assert tuple(int(entry) for entry in table.replace("\n", " ").split(",")) == reference.SQUASH
    for constant in (reference.K1, reference.K2, reference.SALT_OFFSET):
        assert f"0x{constant:016X}" in section
    models = section.split("| model |", 1)[1].split("\n\n", 1)[0]
    rows = models.splitlines()[2:]
    salts = [int(row.split("h(")[-1].split(",")[0]) for row in rows[1:]]
    assert salts == [salt for salt, _ in reference.MODELS[1:]]
    assert [row.endswith("| the same |") for row in rows] == [keeps for _, keeps in reference.MODELS]


def test_the_loaders_probe_digest_is_the_specified_coders() -> None:
    """`ctxmix.PROBE_SHA256`, which every loaded library must reproduce, comes from the spec's coder
    (this file), so a library on any machine is held to section 4.1, not to the build that set it."""
    coded = reference.encode([int(v) for v in ctxmix._PROBE], list(ctxmix._PROBE_PARAMS))
    assert hashlib.sha256(coded).hexdigest() == ctxmix.PROBE_SHA256
