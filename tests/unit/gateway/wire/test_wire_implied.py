"""Version 6's implied counts (docs/wire-format.md 3.2 and 4, "Implied counts"): what a batch saves,
and that a column holding more or fewer integers than its context implies is refused, alone and in
a receiver's group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import wire
from gateway.wire import ReadingColumns, SeriesInfo, encode_batch, intcol, kid_for, sign
from gateway.wire.body import body_cbor
from gateway.wire.cose import parse_sign1
from gateway.wire.group import verify_group
from gateway.wire.implied import restore_counts
from kernel.errors import MalformedBatch

KEY = Ed25519PrivateKey.from_private_bytes(b"\x16" * 32)
KID = kid_for(KEY.public_key())
T0 = 1_764_000_000_000
PRESSURE = SeriesInfo("sand-point", "air_pressure", "hPa", 1.0, 1000)
TABLE = (
    SeriesInfo("t", "air_temperature", "Cel", 0.01, 1000),
    SeriesInfo("p", "air_pressure", "kPa", 1e-5, 1000),  # on a grid of 50/3 units (keys 7 and 8)
    SeriesInfo("w", "wind_speed", "m/s", 0.1, 1000),
)


def ring() -> wire.Keyring:
    keys = wire.Keyring()
    keys.add("gw-6", KEY.public_key())
    return keys


def fields_of(body: bytes) -> dict[int, Any]:
    fields: dict[int, Any] = cbor2.loads(body_cbor(body))
    return fields


def three_series() -> tuple[bytes, ReadingColumns]:
    """Three series of 200 readings 55-64 s apart: timestamps in LZMA planes, steps Huffman-coded,
    the pressure on a grid."""
    rng = np.random.default_rng(4)
    n = 200
    ts = T0 + 1000 * np.tile(np.cumsum(rng.integers(55, 65, n)), 3)
    temperature = np.round(10 + np.cumsum(rng.normal(0, 0.05, n)), 2)
    pressure = 88.5 + np.round(rng.integers(-30, 30, n) * (50 / 3)) / 1e5
    wind = np.round(np.abs(rng.normal(3, 2, n)), 1)
    columns = ReadingColumns(
        np.repeat([0, 1, 2], n), ts, np.concatenate([temperature, pressure, wind]), np.zeros(3 * n, np.uint16)
    )
    return encode_batch(gateway_id="gw-6", seq=1, created_ms=T0, series=TABLE, readings=columns), columns


def test_a_constant_hourly_series_sends_its_interval_once_and_no_steps() -> None:
    """6,000 hours at 1012 hPa: version 5 sent `03 ef2e 01 901c 00 02` for the timestamps (count
    5,999, one nonzero entry: 3,600 s) and `[03 ef2e 00 01]` for the steps; version 6 the interval
    as a CBOR integer and nothing (an absent step column holds zeros)."""
    hours = ReadingColumns(
        np.zeros(6000, np.int32), T0 + 3_600_000 * np.arange(6000), np.full(6000, 1012.0), np.zeros(6000)
    )
    body = encode_batch(gateway_id="gw-6", seq=1, created_ms=T0, series=[PRESSURE], readings=hours)
    readings = fields_of(body)[5]
    assert readings[2] == 3600 and 3 not in readings
    as_version_5 = restore_counts(readings, [PRESSURE], T0 // 1000)
    assert as_version_5[2] == bytes.fromhex("03ef2e01901c0002")
    assert as_version_5[3] == [bytes.fromhex("03ef2e0001")]
    assert len(cbor2.dumps(as_version_5)) - len(cbor2.dumps(readings)) == 14
    batch = wire.verify_and_decode(sign(body, KEY, KID), ring())
    assert batch.version == 6
    assert np.array_equal(batch.readings.ts_ms, hours.ts_ms)
    assert np.array_equal(batch.readings.value, hours.value)


def test_implied_counts_decode_the_same_readings_alone_and_in_a_group() -> None:
    body, columns = three_series()
    readings = fields_of(body)[5]
    # LZMA-plane timestamps and one group's Huffman steps, stated without their counts; the grid's
    # column without its own
    assert (readings[2][0], readings[3][0]) == (intcol.METHOD_LZMA_PLANES, intcol.METHOD_HUFFMAN)
    assert 8 in readings
    blob = sign(body, KEY, KID)
    batch = wire.verify_and_decode(blob, ring())
    [grouped] = verify_group([(parse_sign1(blob), KEY.public_key(), "gw-6", None)])
    assert isinstance(grouped, wire.Batch)
    for got in (batch.readings, grouped.readings):
        assert np.array_equal(got.ts_ms, columns.ts_ms)
        assert np.allclose(got.value, columns.value, rtol=0, atol=1e-9)


def _column(readings: dict[int, Any], key: int) -> np.ndarray:
    """The integers of a version-6 column, read through its version-5 form."""
    column = restore_counts(readings, TABLE, T0 // 1000)[key]
    return intcol.unpack_any(column[0] if isinstance(column, list) else column)


Change = Callable[[dict[int, Any]], None]
HOSTILE: dict[str, Change] = {
    "timestamps one short": lambda r: r.update({2: intcol.pack_varints(_column(r, 2)[:-1])}),
    "timestamps one too many": lambda r: r.update({2: intcol.pack_varints(np.append(_column(r, 2), 0))}),
    "timestamps cut": lambda r: r.update({2: r[2][: len(r[2]) // 2]}),
    "steps one short": lambda r: r.update({3: intcol.pack_varints(_column(r, 3)[:-1])}),
    "steps one too many": lambda r: r.update({3: intcol.pack_varints(np.append(_column(r, 3), 1))}),
    "steps of an unknown method": lambda r: r.update({3: b"\x09\x00"}),
    "sparse steps with an odd number of varints": lambda r: r.update({3: b"\x03\x01\x00"}),
    "sparse steps beyond the count": lambda r: r.update({3: b"\x03\x01\xff\x0f\x02"}),
    "steps not a byte string": lambda r: r.update({3: 7}),
    "a second group without its column": lambda r: r.update({9: [0, 1]}),
    "a group number below zero": lambda r: r.update({9: [0, -1]}),
    "grid steps cut": lambda r: r.update({8: r[8][:-4]}),
    "an empty key-0 column": lambda r: r.update({0: b""}),
    "a regular interval beyond 64 bits": lambda r: r.update({2: 2**64}),
    "a regular interval that is no integer": lambda r: r.update({2: 60.0}),
}


@pytest.mark.parametrize("change", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_column_longer_or_shorter_than_its_implied_count_is_malformed(change: Change) -> None:
    fields = fields_of(three_series()[0])
    change(fields[5])
    blob = sign(cbor2.dumps(fields), KEY, KID)
    with pytest.raises(MalformedBatch):
        wire.verify_and_decode(blob, ring())
    [grouped] = verify_group([(parse_sign1(blob), KEY.public_key(), "gw-6", None)])
    assert isinstance(grouped, MalformedBatch)


def test_counts_beyond_the_batch_limit_are_refused_before_any_zeros_are_made() -> None:
    """An absent column holds zeros of its implied count; the count is checked first (a million
    readings at most), so a 20-byte body cannot make the reader allocate more."""
    huge = {0: 6, 2: 1, 3: 0, 4: [["s", 0, 0, 0]], 5: {0: intcol.pack_varints(np.array([2**40, 0, 0]))}}
    with pytest.raises(MalformedBatch, match="more than the 1000000"):
        wire.verify_and_decode(sign(cbor2.dumps(huge), KEY, KID), ring())


@pytest.mark.parametrize(
    ("ts_ms", "regular"),
    [
        ([[0, 60_000, 120_000, 180_000], [0, 60_000]], 60),  # one minute apart, both: the integer 60
        ([[0, 0, 2_000]], None),  # a first interval of 0, then 2 s: not regular (not "0 apart")
        ([[0, 60_000, 120_000], [0, 30_000, 60_000]], None),  # regular, at two intervals
        ([[0, 60_000, 120_000, 180_000], [0, 60_000, 180_000]], None),  # the second misses a reading
        ([[0, -60_000, -120_000]], 60),  # sorted by time first: regular at 60 again
    ],
)
def test_timestamps_travel_as_one_interval_only_when_every_series_is_regular_at_it(
    ts_ms: list[list[int]], regular: int | None
) -> None:
    series = np.concatenate([np.full(len(ts), s, np.int32) for s, ts in enumerate(ts_ms)])
    ts = T0 + np.concatenate([np.array(t, np.int64) for t in ts_ms])
    columns = ReadingColumns(series, ts, np.arange(series.size, dtype=np.float64), np.zeros(series.size))
    table = [SeriesInfo(f"s{i}", "air_temperature", "Cel", 0.1, 1000) for i in range(len(ts_ms))]
    body = encode_batch(gateway_id="gw-6", seq=1, created_ms=T0, series=table, readings=columns)
    key_2 = fields_of(body)[5].get(2)
    assert (key_2 if isinstance(key_2, int) else None) == regular
    decoded = wire.verify_and_decode(sign(body, KEY, KID), ring()).readings
    order = np.lexsort((ts, series))
    assert np.array_equal(decoded.ts_ms, ts[order])
