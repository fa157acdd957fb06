"""The fixed bytes of a small batch (issue 18, profile (b): 30 series of 57 readings a batch):
version 5's counts and heads in one int-column, its grids packed, its quality flags as runs
(docs/wire-format.md, 3.2, 3.2.1, 3.2.4 and 3.2.7)."""

from __future__ import annotations

from typing import Any

import cbor2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire import (
    Batch,
    Keyring,
    ReadingColumns,
    SeriesInfo,
    encode_batch,
    intcol,
    kid_for,
    sign,
    verify_and_decode,
)
from gateway.wire import body as body_codec
from gateway.wire.body import body_cbor
from gateway.wire.cose import parse_sign1
from gateway.wire.group import verify_group
from gateway.wire.implied import restore_counts
from gateway.wire.readings import counts_and_heads, decode_readings
from kernel.errors import MalformedBatch

KEY = Ed25519PrivateKey.from_private_bytes(b"\x18" * 32)
KID = kid_for(KEY.public_key())
T0 = 1_796_531_454_000
#: profile (b)'s table: 10 sensors x air pressure, dew point, IR temperature
TABLE = tuple(
    SeriesInfo(f"s{i}", quantity, unit, resolution, 100)
    for quantity, unit, resolution in (("air_pressure", "kPa", 1e-5), ("dew_point", "Cel", 0.01), ("ir_temp", "Cel", 0.01))
    for i in range(10)
)  # fmt: skip


def profile_b_batch(seed: int = 18) -> ReadingColumns:
    """57 readings a second apart per series, random walks around each quantity's level."""
    rng = np.random.default_rng(seed)
    level = {"air_pressure": 101.3, "dew_point": 4.0, "ir_temp": 12.0}
    parts = []
    for s, info in enumerate(TABLE):
        start = level[info.quantity] + rng.normal(0, 1.0)
        resolution = info.resolution or 1.0
        walk = np.round((start + np.cumsum(rng.normal(0, 2 * resolution, 57))) / resolution) * resolution
        ts = T0 + 100 * rng.integers(0, 10) + 1000 * np.arange(57)
        parts.append((np.full(57, s), ts, walk))
    series, ts, value = (np.concatenate(c) for c in zip(*parts, strict=True))
    return ReadingColumns(
        series.astype(np.int32), ts.astype(np.int64), value, np.zeros(series.size, np.uint16)
    )


def readings_map(columns: ReadingColumns) -> dict[int, Any]:
    body = encode_batch(
        gateway_id="gw-b", seq=2, created_ms=T0, series=TABLE, readings=columns, epoch=bytes(16)
    )
    fields = cbor2.loads(body_cbor(body))
    assert isinstance(fields, dict)
    # version 6 leaves some counts implied: the map in version 5's form, which decode_readings reads
    return restore_counts(fields[body_codec.READINGS], TABLE, T0 // 1000)


def as_version_4(readings: dict[int, Any]) -> dict[int, Any]:
    """The same readings map with counts and heads as the two arrays of versions 1 to 4 (whose first
    timestamp head is absolute)."""
    counts, heads = counts_and_heads(readings, TABLE, T0 // 1000)
    return {**readings, 0: counts, 1: heads}


def test_counts_and_heads_travel_in_one_column_that_costs_less_than_two_arrays() -> None:
    columns = profile_b_batch()
    readings = readings_map(columns)
    assert isinstance(readings[0], bytes) and 1 not in readings
    fields = {0: 5, 2: 2, 3: T0 // 1000, 11: bytes(8), body_codec.READINGS: readings}
    ours = len(body_codec._smallest_frame(fields, None))
    arrays = len(body_codec._smallest_frame({**fields, body_codec.READINGS: as_version_4(readings)}, None))
    assert arrays - ours >= 20  # 33 bytes a batch on the benchmark's real readings (docs/lte.md)


def test_both_layouts_decode_to_the_same_readings() -> None:
    columns = profile_b_batch(7)
    readings = readings_map(columns)
    new, old = decode_readings(readings, TABLE, T0 // 1000), decode_readings(as_version_4(readings), TABLE)
    order = np.lexsort((columns.ts_ms, columns.series))
    for got in (new, old):
        assert np.array_equal(got.series, columns.series[order])
        assert np.array_equal(got.ts_ms, columns.ts_ms[order])
        assert np.allclose(got.value, columns.value[order], rtol=0, atol=1e-9)


def _signed_with(readings: dict[int, Any]) -> bytes:
    fields = {0: 5, 2: 2, 3: T0 // 1000, 4: [["s", 0, 0, 2]], body_codec.READINGS: readings}
    return sign(cbor2.dumps(fields), KEY, KID)


def _column(ints: list[int]) -> bytes:
    return intcol.pack_varints(np.array(ints, np.int64))


def _one_series_map(ints: list[int]) -> dict[int, Any]:
    return {0: _column(ints), 2: b"\x00\x00", 3: [b"\x00\x00"]}


@pytest.mark.parametrize(
    ("readings", "why"),
    [
        ({**_one_series_map([2, 17965314549, 1234]), 1: [17965314549, 1234]}, "no key 1"),
        (_one_series_map([]), "one non-negative count per series"),
        (_one_series_map([-2, 17965314549, 1234]), "one non-negative count per series"),
        (_one_series_map([2, 17965314549]), "heads hold 1 values, the counts need 2"),
        (_one_series_map([2, 17965314549, 1234, 5]), "heads hold 3 values, the counts need 2"),
        ({**_one_series_map([2, 17965314549, 1234]), 5: _column([1, 2, 0, 32])}, "adding up to 2"),
        ({**_one_series_map([2, 17965314549, 1234]), 5: _column([1, 1, 0])}, "adding up to 2"),
        ({**_one_series_map([2, 17965314549, 1234]), 5: _column([2, 1 << 16])}, "fit in 16 bits"),
        ({**_one_series_map([2, 17965314549, 1234]), 7: _column([0, 50])}, "series, a and j"),
    ],
)
def test_a_counts_and_heads_column_that_does_not_fit_is_malformed(readings: dict[int, Any], why: str) -> None:
    keys = Keyring()
    keys.add("gw-b", KEY.public_key())
    with pytest.raises(MalformedBatch, match=why):
        verify_and_decode(_signed_with(readings), keys)


def test_a_sensor_out_of_range_for_minutes_costs_its_flags_as_runs() -> None:
    """Profile (b)'s dew point file is beyond its limits 60 % of the time, in stretches."""
    columns = profile_b_batch(3)
    quality = np.zeros(len(columns), np.uint16)
    dew_point = np.flatnonzero((columns.series >= 10) & (columns.series < 20))
    quality[dew_point[100:440]] = 32
    flagged = ReadingColumns(columns.series, columns.ts_ms, columns.value, quality)
    readings = readings_map(flagged)
    assert isinstance(readings[5], bytes)
    order = np.lexsort((columns.ts_ms, columns.series))
    assert np.array_equal(decode_readings(readings, TABLE, T0 // 1000).quality, quality[order])


@pytest.mark.parametrize("created_ms", [T0 + 57_000, T0 + 86_400_000 * 3, T0 - 3_600_000])
def test_the_first_timestamp_head_is_relative_to_the_creation_time(created_ms: int) -> None:
    """At the end of its 57 s a batch's first head is a few hundred units of 100 ms, not 1.8e10;
    a backlog sealed days later, or a clock stepped back, still decodes to the same times."""
    columns = profile_b_batch(11)
    body = encode_batch(
        gateway_id="gw-b", seq=2, created_ms=created_ms, series=TABLE, readings=columns, epoch=bytes(16)
    )
    first_head = int(intcol.unpack_any(cbor2.loads(body_cbor(body))[5][0])[len(TABLE)])
    expected = int(columns.ts_ms[columns.series == 0].min()) // 100 - created_ms // 100
    assert first_head == expected
    keys = Keyring()
    keys.add("gw-b", KEY.public_key())
    decoded = verify_and_decode(sign(body, KEY, KID), keys).readings
    assert np.array_equal(decoded.ts_ms, columns.ts_ms[np.lexsort((columns.ts_ms, columns.series))])


INT64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([0, 5, 7]),
    st.lists(st.one_of(st.integers(-3, 70), INT64), max_size=80),
    st.one_of(st.integers(-(2**40), 2**40), st.just(0)),
)
def test_hostile_counts_heads_runs_and_grid_columns_raise_only_malformed_batch(
    key: int, ints: list[int], created_s: int
) -> None:
    """Any integers in version 5's new columns, with any creation time: decoded or MalformedBatch."""
    body = cbor2.loads(body_cbor(encode_batch(
        gateway_id="gw-b", seq=2, created_ms=T0, series=TABLE, readings=profile_b_batch(5), epoch=bytes(16)
    )))  # fmt: skip
    body[3] = created_s
    body[body_codec.READINGS][key] = _column(ints)
    blob = sign(cbor2.dumps(body), KEY, KID)
    keys = Keyring()
    keys.add("gw-b", KEY.public_key())
    alone: Batch | MalformedBatch
    try:
        alone = verify_and_decode(blob, keys)
    except MalformedBatch as exc:
        alone = exc
    # the receivers' path decodes a group at a time and must give the same verdict
    (grouped,) = verify_group([(parse_sign1(blob), KEY.public_key(), "gw-b", None)])
    if isinstance(alone, Batch):
        assert isinstance(grouped, Batch)
        assert np.array_equal(grouped.readings.ts_ms, alone.readings.ts_ms)
        assert np.array_equal(grouped.readings.quality, alone.readings.quality)
    else:
        assert isinstance(grouped, MalformedBatch) and str(grouped) == str(alone)
