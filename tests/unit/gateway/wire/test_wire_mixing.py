"""Method 8 (context mixing, docs/wire-format.md section 4): version 6's value-step columns only,
decoded alone and in a group, refused anywhere else, hostile columns refused or decoded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import wire
from gateway.wire import ReadingColumns, SeriesInfo, ctxmix, encode_batch, huffman, kid_for, mixing, sign
from gateway.wire.body import body_cbor
from gateway.wire.cose import parse_sign1
from gateway.wire.group import verify_group
from gateway.wire.implied import restore_counts
from kernel.errors import MalformedBatch

KEY = Ed25519PrivateKey.from_private_bytes(b"\x18" * 32)
KID = kid_for(KEY.public_key())
T0 = 1_764_000_000_000
TEMPERATURE = SeriesInfo("greensboro", "air_temperature", "Cel", 0.1, 1000)
HOURS = 24 * 20


def ring() -> wire.Keyring:
    keys = wire.Keyring()
    keys.add("gw-8", KEY.public_key())
    return keys


def hourly() -> ReadingColumns:
    """20 days of an hourly temperature at 0.1 degC: a daily swing with weather on top."""
    rng = np.random.default_rng(8)
    hour = np.arange(HOURS)
    value = np.round(12 + 6 * np.sin(2 * np.pi * hour / 24) + np.cumsum(rng.normal(0, 0.3, HOURS)), 1)
    return ReadingColumns(np.zeros(HOURS, np.int32), T0 + 3_600_000 * hour, value, np.zeros(HOURS, np.uint16))


def steps_of(columns: ReadingColumns) -> np.ndarray:
    return np.diff(np.round(columns.value / TEMPERATURE.resolution).astype(np.int64))


def without_count(column: bytes) -> bytes:
    """A counted column in version 6's form (section 4, "Implied counts")."""
    _, end = huffman.read_uvarint(column, 1)
    return column[:1] + column[end:]


def with_steps(column: bytes, version: int = 6, key: int = 3) -> bytes:
    """The batch of `hourly()` with `column` (the steps as residuals of the previous value) at `key`."""
    columns = hourly()
    fields: dict[int, Any] = cbor2.loads(
        body_cbor(
            encode_batch(gateway_id="gw-8", seq=1, created_ms=T0, series=[TEMPERATURE], readings=columns)
        )
    )
    readings = fields[5]
    if version < 6:
        readings = fields[5] = restore_counts(readings, [TEMPERATURE], T0 // 1000)
        fields[0] = version
    readings.pop(10, None)
    readings[key] = column if version >= 6 else [column]
    return sign(cbor2.dumps(fields), KEY, KID)


def decoded_both_ways(blob: bytes) -> list[wire.Batch]:
    [grouped] = verify_group([(parse_sign1(blob), KEY.public_key(), "gw-8", None)])
    if isinstance(grouped, Exception):
        raise grouped
    return [wire.verify_and_decode(blob, ring()), grouped]


@pytest.mark.parametrize(("history", "modulus"), [(mixing.STEPS, 0), (mixing.LEVELS, 0)])
def test_a_version_6_body_with_a_context_mixed_step_column_decodes_alone_and_in_a_group(
    history: int, modulus: int
) -> None:
    columns = hourly()
    d = steps_of(columns)
    ints = np.cumsum(d) if history == mixing.LEVELS else d
    column = without_count(mixing.pack(ints, 24, history, modulus))
    readings_key10 = [-1] if history == mixing.LEVELS else None
    fields: dict[int, Any] = cbor2.loads(body_cbor(parse_sign1(with_steps(column)).payload))
    if readings_key10:
        fields[5][10] = readings_key10
    blob = sign(cbor2.dumps(fields), KEY, KID)
    for batch in decoded_both_ways(blob):
        assert batch.version == 6
        assert np.array_equal(batch.readings.ts_ms, columns.ts_ms)
        assert np.allclose(batch.readings.value, columns.value, rtol=0, atol=1e-9)


def test_a_context_mixed_column_in_a_version_5_body_is_malformed() -> None:
    """Method 8 came with version 6: a version-5 reader never knew it, so a version-5 body may not use it."""
    blob = with_steps(mixing.pack(steps_of(hourly()), 24, mixing.STEPS, 0), version=5)
    with pytest.raises(MalformedBatch, match=r"method 8 \(context mixing\) stands only"):
        wire.verify_and_decode(blob, ring())
    [grouped] = verify_group([(parse_sign1(blob), KEY.public_key(), "gw-8", None)])
    assert isinstance(grouped, MalformedBatch)


def test_a_context_mixed_column_outside_the_value_steps_is_malformed() -> None:
    """The timestamps' second differences as method 8: the writer never puts it there."""
    dod = np.zeros(HOURS - 1, np.int64)
    dod[0] = 3600
    with pytest.raises(MalformedBatch, match=r"method 8 \(context mixing\) stands only"):
        wire.verify_and_decode(with_steps(without_count(mixing.pack(dod, 0, 0, 0)), key=2), ring())


def params_head(period_and_history: int, modulus: int) -> bytes:
    return (
        bytes([mixing.METHOD_CONTEXT_MIXING]) + huffman.uvarint(period_and_history) + huffman.uvarint(modulus)
    )


@pytest.mark.parametrize(
    ("period_and_history", "modulus"),
    [(2 * 1, 0), (2 * (mixing.MAX_PERIOD + 1), 0), (48, 1), (48, mixing.MAX_MODULUS + 1), (2**70, 0)],
    ids=["period 1", "period beyond 1440", "circle of 1", "circle beyond 2^32", "period beyond 64 bits"],
)
def test_context_mixing_parameters_out_of_bounds_are_malformed(period_and_history: int, modulus: int) -> None:
    coded = ctxmix.encode(steps_of(hourly()), [24, 0, 0])
    blob = with_steps(params_head(period_and_history, modulus) + coded)
    with pytest.raises(MalformedBatch):
        wire.verify_and_decode(blob, ring())


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2 * mixing.MAX_PERIOD + 1),
    st.sampled_from([0, 2, 37, 360]),
    st.binary(min_size=0, max_size=64),
)
def test_hostile_context_mixing_bytes_are_malformed_or_values(
    period_and_history: int, modulus: int, tail: bytes
) -> None:
    """Random coder bytes under any parameters: a clear error or values, never another exception."""
    column = mixing.ImpliedStepColumn(
        params_head(period_and_history, modulus)[:1] + huffman.uvarint(HOURS - 1)
    )
    column = mixing.ImpliedStepColumn(column + params_head(period_and_history, modulus)[1:] + tail)
    try:
        values = wire.intcol.unpack(column, HOURS - 1)
    except MalformedBatch:
        return
    assert values.shape == (HOURS - 1,) and values.dtype == np.int64


def test_one_minute_batches_never_run_the_coder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's batches (10 minutes of one-minute readings) are below the day layout's gate: the
    coder, at about 0.6 us an integer, would cost them more than it could save."""

    def refuse(values: np.ndarray, params: list[int]) -> bytes:
        raise AssertionError("the coder ran on a one-minute batch")

    monkeypatch.setattr(ctxmix, "encode", refuse)
    rng = np.random.default_rng(1)
    minutes = ReadingColumns(
        np.zeros(600, np.int32),
        T0 + 60_000 * np.arange(600),
        np.round(20 + np.cumsum(rng.normal(0, 0.2, 600)), 1),
        np.zeros(600, np.uint16),
    )
    body = encode_batch(gateway_id="gw-8", seq=1, created_ms=T0, series=[TEMPERATURE], readings=minutes)
    assert np.allclose(wire.verify_and_decode(sign(body, KEY, KID), ring()).readings.value, minutes.value)


def _missing(values: np.ndarray, params: list[int]) -> bytes:
    raise ctxmix.CoderUnavailable("the coder library /nowhere/_ctxmix.so cannot be used")


def test_a_gateway_whose_coder_library_is_broken_still_encodes_hourly_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing or foreign `_ctxmix.so` (`gateway selftest` reports it) costs method 8, not the batch."""
    monkeypatch.setattr(ctxmix, "encode", _missing)
    columns = hourly()
    body = encode_batch(gateway_id="gw-8", seq=1, created_ms=T0, series=[TEMPERATURE], readings=columns)
    assert cbor2.loads(body_cbor(body))[5][3][0] != mixing.METHOD_CONTEXT_MIXING
    assert np.allclose(wire.verify_and_decode(sign(body, KEY, KID), ring()).readings.value, columns.value)


MORE_SERIES = Path(__file__).resolve().parents[5] / "shared" / "data" / "more-series"


def irradiance(hours: int) -> ReadingColumns:
    """The first `hours` of the hourly global irradiance at Greensboro (TMY3, W/m2)."""
    rows = np.loadtxt(
        MORE_SERIES / "greensboro-global_irradiance.csv", delimiter=",", skiprows=1, max_rows=hours
    )
    return ReadingColumns(np.zeros(hours, np.int32), rows[:, 0].astype(np.int64), rows[:, 1], np.zeros(hours))


IRRADIANCE = SeriesInfo("greensboro", "global_irradiance", "W/m2", 1.0, 1000)


def test_the_writer_keeps_context_mixing_where_it_makes_the_batch_smaller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Greensboro irradiance, 60 days: version 5 sent the daily predictor's residuals as method 7;
    method 8 over the levels (predictor -1) is smaller, so the writer names predictor -1 instead."""
    columns = irradiance(24 * 60)
    written = encode_batch(gateway_id="gw-8", seq=1, created_ms=T0, series=[IRRADIANCE], readings=columns)
    readings = cbor2.loads(body_cbor(written))[5]
    assert readings[3][:2] == bytes([mixing.METHOD_CONTEXT_MIXING, 2 * 24 + mixing.LEVELS])
    assert readings[10] == [-1]
    assert np.array_equal(
        wire.verify_and_decode(sign(written, KEY, KID), ring()).readings.value, columns.value
    )
    monkeypatch.setattr(ctxmix, "encode", _missing)
    before = encode_batch(gateway_id="gw-8", seq=1, created_ms=T0, series=[IRRADIANCE], readings=columns)
    assert cbor2.loads(body_cbor(before))[5][3][0] != mixing.METHOD_CONTEXT_MIXING
    assert len(sign(written, KEY, KID)) < 0.95 * len(sign(before, KEY, KID))
