"""The group decoder (`gateway.wire.group.verify_group`, what the receiver's group commit uses) gives
exactly what `verify_message` gives for each batch alone: the same Batch down to every bit of every
column, or the same error with the same message, whatever else is in the group."""

from __future__ import annotations

import math
from pathlib import Path

import cbor2
import numpy as np
import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import wire
from gateway.wire import Batch, ReadingColumns, SeriesInfo, WindowColumns, group, intcol, mixing
from gateway.wire import body as body_module
from gateway.wire.body import body_cbor
from gateway.wire.cose import parse_sign1
from gateway.wire.group import Item, verify_group
from hil.fleet import SimulatedGateway
from kernel.errors import WireError

DATA = Path(__file__).parent / "data"
FIXTURE_KEY = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)  # signed the stored v1 and v2 batches
KEY = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
KID = wire.kid_for(KEY.public_key())
T0 = 1_767_225_600_000


def outcome(result: Batch | WireError) -> object:
    """Everything a receiver stores of a batch (columns as exact bytes: NaN and -0.0 compare), or
    the error's type and message."""
    if isinstance(result, WireError):
        return type(result).__name__, str(result)
    readings = [(c.dtype.str, c.tobytes()) for c in _columns(result.readings)]
    windows = [(c.dtype.str, c.tobytes()) for c in _columns(result.windows)]
    return (
        result.version, result.gateway_id, result.seq, result.created_ms, result.kid, result.epoch,
        result.digest, result.series, readings, windows, result.gaps, result.events, result.rollover,
    )  # fmt: skip


def _columns(columns: ReadingColumns | WindowColumns) -> list[np.ndarray]:
    return [v for v in vars(columns).values() if isinstance(v, np.ndarray)]


def item(
    blob: bytes,
    key: Ed25519PrivateKey = KEY,
    gateway_id: str = "gw-group",
    catalogues: wire.CatalogueLookup | None = None,
) -> Item:
    return parse_sign1(blob), key.public_key(), gateway_id, catalogues


def assert_group_is_each_alone(items: list[Item]) -> None:
    alone = []
    for one in items:
        try:
            alone.append(outcome(wire.verify_message(*one)))
        except WireError as exc:
            alone.append(outcome(exc))
    assert [outcome(r) for r in verify_group(items)] == alone


def body(seq: int, series: list[SeriesInfo], readings: ReadingColumns, **more: object) -> bytes:
    return wire.encode_batch(
        gateway_id="gw-group", seq=seq, created_ms=T0, series=series, readings=readings,
        epoch=bytes(range(16)), **more,  # type: ignore[arg-type]
    )  # fmt: skip


def readings_of(series: np.ndarray, values: np.ndarray, step_ms: int = 1000, quality=None) -> ReadingColumns:  # type: ignore[no-untyped-def]
    n = series.size
    return ReadingColumns(
        series=series.astype(np.int32),
        ts_ms=T0 + np.arange(n, dtype=np.int64) * step_ms,
        value=values,
        quality=np.zeros(n, np.uint16) if quality is None else quality,
    )


def mixed_batches() -> list[bytes]:
    """Batches of every shape the format allows, each signed by KEY for gw-group."""
    rng = np.random.default_rng(5)
    table = [
        SeriesInfo("t", "air_temperature", "Cel", 0.01, 1000),
        SeriesInfo("raw", "voltage", "V", None),  # lossless float64 values
        SeriesInfo("pm", "pm10", "ug/m3", 0.5),  # a float scale
        SeriesInfo("p", "air_pressure", "kPa", 1e-5, 1000),  # steps on a grid of 50/3
        SeriesInfo("big", "count", "1", 1000.0),  # a negative decimal exponent
    ]
    n = 300
    sid = np.sort(rng.integers(0, 5, n))
    values = np.round(rng.normal(10, 3, n), 2)
    values[sid == 3] = 88.5 + np.round(rng.integers(-30, 30, int((sid == 3).sum())) * (50 / 3)) / 1e5
    values[sid == 4] = rng.integers(0, 50, int((sid == 4).sum())) * 1000.0
    values[::29] = np.nan  # exceptions in the quantised series, NaN in the lossless one
    values[7] = math.inf
    quality = (rng.random(n) < 0.1).astype(np.uint16) * 4
    hourly = np.arange(24 * 4)  # a daily cycle, hourly: the encoder may pick the period predictor
    daily = np.round(10 + 5 * np.sin(hourly * 2 * np.pi / 24) + rng.normal(0, 0.05, hourly.size), 2)
    one = [SeriesInfo("only", "t", "Cel", 0.1)]
    windows = WindowColumns(
        series=np.array([0, 2]), window_start=np.array([T0, T0]), window_ms=np.array([60_000, 60_000]),
        rev=np.array([0, 1]), count=np.array([60, 60]), nan_count=np.array([0, 2]),
        min=np.array([1.0, np.nan]), max=np.array([2.0, 3.0]), mean=np.array([1.5, 2.0]),
        std=np.array([0.1, 0.2]), first=np.array([1.0, 2.0]), last=np.array([2.0, 3.0]),
        first_ts=np.array([T0, T0]), last_ts=np.array([T0 + 59_000, T0 + 59_000]),
    )  # fmt: skip
    events = {
        "gaps": [wire.Gap(0, T0 - 5000, T0, 5, "quota")],
        "events": [wire.Event(T0, "clock", "synced", "{}")],
    }
    return [
        wire.sign(body(1, table, readings_of(sid, values, quality=quality), windows=windows), KEY, KID),
        wire.sign(body(2, one, readings_of(np.zeros(hourly.size), daily, step_ms=3_600_000)), KEY, KID),
        # one reading of one series, none of another: heads but no steps
        wire.sign(body(3, [*one, *one], readings_of(np.zeros(1), np.array([3.0]))), KEY, KID),
        wire.sign(
            body(4, one, ReadingColumns.empty(), windows=WindowColumns.empty()), KEY, KID
        ),  # no readings
        wire.sign(body(5, one, readings_of(np.zeros(4), np.array([1.0, 1.1, 1.2, 1.1])), **events), KEY, KID),
        wire.sign(
            body(6, table[:2], readings_of(np.repeat([0, 1], 40), rng.normal(0, 1, 80).round(2))), KEY, KID
        ),
    ]


def test_a_mixed_group_decodes_exactly_as_each_batch_alone() -> None:
    fleet = [SimulatedGateway(f"gw-{i}", series=20) for i in range(3)]
    items = [item(blob) for blob in mixed_batches()]
    items += [item(gw.batch(5), gw.key, gw.gateway_id) for gw in fleet for _ in range(3)]
    noisy = np.round(np.cumsum(np.random.default_rng(3).normal(0, 2, 1500)), 1)  # a long Huffman column
    items.append(
        item(
            wire.sign(
                body(9, [SeriesInfo("long", "t", "Cel", 0.1)], readings_of(np.zeros(1500), noisy)), KEY, KID
            )
        )
    )
    stored = ["batch-v1", "batch-v2", "batch_v3_compression", "batch_v3_catalogue", "batch_v4_declaring"]
    for place, name in enumerate(stored, start=1):  # stored batches of older wire versions
        items.insert(place, item((DATA / f"{name}.cose").read_bytes(), FIXTURE_KEY, "gw-fixture"))
    assert_group_is_each_alone(items)
    results = verify_group(items)
    assert all(isinstance(r, Batch) for r in results)
    assert sum(len(r.readings) for r in results if isinstance(r, Batch)) > 1000


def _modelled_batches() -> list[bytes]:
    """Version-5 batches whose value steps take PPMd (levels of a wind that dwells at a few speeds,
    predictor -1), method 7 (hourly irradiance: wide steps, their symbols modelled) and brotli in
    order (an hourly duty cycle that repeats a few shapes)."""
    rng = np.random.default_rng(8)
    levels, at, knots = np.array([0, 7, 13, 22, 30]), 0, np.zeros(3000)
    for i in range(knots.size):
        at = int(rng.integers(0, levels.size)) if rng.random() < 0.15 else at
        knots[i] = max(0, levels[at] + (rng.random() < 0.3) * int(rng.integers(-1, 2)))
    hour = np.arange(24 * 150) % 24
    clear = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None) * 800
    sun = np.round(
        clear * np.repeat(rng.uniform(0.3, 1.0, 150), 24) + (clear > 0) * rng.normal(0, 15, hour.size)
    )
    shapes = [rng.integers(-6, 7, int(rng.integers(3, 9))) for _ in range(40)]
    cycle = 500.0 + np.cumsum(np.concatenate([shapes[int(i)] for i in rng.integers(0, 40, 3000)])[:3000])
    return [
        wire.sign(body(11, [SeriesInfo("wind", "wind_speed", "kn", 1.0, 1000)], readings_of(np.zeros(3000), knots, step_ms=3_600_000)), KEY, KID),
        wire.sign(body(12, [SeriesInfo("sun", "irr", "W/m2", 1.0, 1000)], readings_of(np.zeros(sun.size), np.clip(sun, 0, None), step_ms=3_600_000)), KEY, KID),
        wire.sign(body(14, [SeriesInfo("pump", "flow", "l/min", 1.0, 1000)], readings_of(np.zeros(cycle.size), cycle, step_ms=3_600_000)), KEY, KID),
    ]  # fmt: skip


def test_a_group_with_context_mixed_columns_decodes_exactly_as_each_batch_alone() -> None:
    """The same hourly batches with the coder: method 8 takes the wind's levels and the irradiance
    (levels too: predictor -1), brotli keeps the duty cycle's repeated shapes."""
    blobs = _modelled_batches()
    readings = [cbor2.loads(body_cbor(parse_sign1(b).payload))[5] for b in blobs]
    assert [r[3][0] for r in readings[:2]] == [mixing.METHOD_CONTEXT_MIXING] * 2
    items = [item(blobs[0]), *[item(b) for b in mixed_batches()[:2]], item(blobs[1]), item(blobs[2])]
    assert_group_is_each_alone(items)
    assert all(isinstance(r, Batch) for r in verify_group(items))


@pytest.mark.usefixtures("without_the_coder")
def test_a_group_with_ppmd_and_brotli_columns_decodes_exactly_as_each_batch_alone() -> None:
    blobs = _modelled_batches()
    steps = [cbor2.loads(body_cbor(parse_sign1(b).payload))[5][3] for b in blobs]
    methods = [(s if isinstance(s, bytes) else s[0])[0] for s in steps]  # version 6: one group, no array
    assert methods == [5, 7, 6]
    items = [item(blobs[0]), *[item(b) for b in mixed_batches()[:2]], item(blobs[1]), item(blobs[2])]
    assert_group_is_each_alone(items)
    assert all(isinstance(r, Batch) for r in verify_group(items))


def test_batches_naming_a_catalogue_decode_in_a_group_as_alone_and_unknown_ones_are_refused() -> None:
    """Version 4: a batch that refers to its series catalogue gets the table from the caller's lookup;
    without it, UnknownCatalogue, in a group exactly as alone. Sparse columns (rain) ride along."""
    table = [SeriesInfo("rain", "precipitation", "mm", 0.001, 1000), SeriesInfo("t", "t", "Cel", 0.1, 1000)]
    rng = np.random.default_rng(11)
    rain = np.where(rng.random(200) < 0.03, rng.integers(1, 5, 200), 0).astype(float)
    values = np.concatenate([rain, np.round(10 + np.cumsum(rng.normal(0, 0.3, 200)), 1)])
    readings = readings_of(np.repeat([0, 1], 200), values)
    declaring = wire.sign(body(1, table, readings), KEY, KID)
    referring = [wire.sign(body(seq, table, readings, refer_to_catalogue=True), KEY, KID) for seq in (2, 3)]
    known = wire.KnownCatalogues()
    declared = wire.verify_message(*item(declaring))
    known.learn(declared)
    items = [item(declaring), *(item(b, catalogues=known.lookup) for b in referring), item(referring[0])]
    assert_group_is_each_alone(items)
    results = verify_group(items)
    assert [type(r).__name__ for r in results] == ["Batch", "Batch", "Batch", "UnknownCatalogue"]
    assert all(np.array_equal(r.readings.value, declared.readings.value) for r in results[1:3])  # type: ignore[union-attr]


def test_bad_batches_in_a_group_get_the_error_they_get_alone_and_spoil_nothing_else() -> None:
    good = [item(blob) for blob in mixed_batches()]
    stranger = Ed25519PrivateKey.from_private_bytes(b"\x0a" * 32)
    fields = cbor2.loads(body_cbor(parse_sign1(mixed_batches()[0]).payload))
    # the timestamps' sparse column (version 6: no count, no number of entries) cut inside its last varint
    truncated_column = {**fields, 5: {**fields[5], 2: fields[5][2][:-1]}}
    # version 5: counts and heads share key 0's int-column; one integer too many there
    one_head_too_many = np.append(intcol.unpack_any(fields[5][0]), 7)
    bad_heads = {**fields, 5: {**fields[5], 0: intcol.pack_varints(one_head_too_many)}}
    newer = {**fields, 0: 99}
    bad = [
        item(wire.sign(_zstd(truncated_column), KEY, KID)),
        item(wire.sign(_zstd(bad_heads), KEY, KID)),
        item(wire.sign(_zstd(newer), KEY, KID)),
        item(wire.sign(_zstd(fields), stranger, KID)),  # signature by another key
        # a body that names its gateway, signed by a key registered for another
        item(wire.sign(_zstd({**fields, 1: "gw-group"}), KEY, KID), gateway_id="gw-other"),
    ]
    items = [good[0], bad[0], good[1], *bad[1:], *good[2:]]
    assert_group_is_each_alone(items)
    results = verify_group(items)
    assert [type(r).__name__ for r in results[1:2] + results[3:7]] == [
        "MalformedBatch", "MalformedBatch", "UnsupportedVersion", "BadSignature", "BadSignature",
    ]  # fmt: skip


def _zstd(fields: object) -> bytes:
    return zstandard.ZstdCompressor().compress(cbor2.dumps(fields))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 30), min_size=1, max_size=6),  # readings per series
            st.sampled_from([0.1, 0.01, 0.5, None, 100.0]),
            st.integers(0, 2**31),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_random_groups_decode_exactly_as_each_batch_alone(
    shapes: list[tuple[list[int], float | None, int]],
) -> None:
    blobs = []
    for seq, (counts, resolution, seed) in enumerate(shapes):
        rng = np.random.default_rng(seed)
        table = [SeriesInfo(f"s{i}", "q", "u", resolution if i % 3 else 0.01) for i in range(len(counts))]
        sid = np.repeat(np.arange(len(counts)), counts)
        values = np.round(np.cumsum(rng.normal(0, 1 + seed % 50, sid.size)), 2)
        values[rng.random(sid.size) < 0.05] = np.nan
        quality = (rng.random(sid.size) < 0.1).astype(np.uint16)
        blobs.append(wire.sign(body(seq, table, readings_of(sid, values, quality=quality)), KEY, KID))
    assert_group_is_each_alone([item(b) for b in blobs])


def test_a_version_the_group_decoder_was_not_written_for_is_decoded_with_its_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def together(plans: list[object]) -> list[object]:
        calls.append(len(plans))
        return []

    monkeypatch.setattr(group, "_decode_together", together)
    monkeypatch.setattr(body_module, "GROUP_DECODED_VERSIONS", frozenset({1, 2}))  # as if 3 were new
    items = [item(blob) for blob in mixed_batches()]
    assert_group_is_each_alone(items)
    assert calls == []  # every version-3 readings map went through decode_body's own reader


GATEWAY = SimulatedGateway("gw-group", series=20, key=KEY)
BASE = cbor2.loads(body_cbor(parse_sign1(GATEWAY.batch(5)).payload))
GOOD = [item(GATEWAY.batch(5)) for _ in range(2)]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats() | st.binary(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.integers(0, 11), inner, max_size=4),
    max_leaves=20,
)


def among_good(readings: dict[int, object]) -> None:
    """A batch with this readings map, signed, between two good ones: each gets what it gets alone."""
    garbled = wire.sign(_zstd({**BASE, 5: readings}), KEY, KID)
    assert_group_is_each_alone([GOOD[0], item(garbled), GOOD[1]])


@FUZZ
@given(st.integers(0, 11), CBOR_VALUES)
def test_a_readings_map_with_one_replaced_entry_gets_its_own_verdict_in_a_group(
    key: int, value: object
) -> None:
    among_good({**BASE[5], key: value})


@FUZZ
@given(st.sampled_from([2, 3]), st.lists(st.integers(0, 8 * 200), min_size=1, max_size=4))
def test_a_column_with_flipped_bits_gets_its_own_verdict_in_a_group(key: int, bits: list[int]) -> None:
    column = bytearray(BASE[5][key] if key == 2 else BASE[5][key][0])
    for bit in bits:
        column[(bit // 8) % len(column)] ^= 1 << (bit % 8)
    among_good({**BASE[5], key: bytes(column) if key == 2 else [bytes(column)]})


def test_a_group_is_decoded_in_pieces_of_bounded_size(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[list[int]] = []
    together = group._decode_together

    def counting(plans: list[group._Plan]) -> list[ReadingColumns]:
        sizes.append([p.size for p in plans])
        return together(plans)

    monkeypatch.setattr(group, "_decode_together", counting)
    monkeypatch.setattr(group, "JOINT_READINGS", 250)
    fleet = [SimulatedGateway(f"gw-{i}", series=20) for i in range(2)]
    big = SimulatedGateway("gw-big", series=20)
    items = [item(gw.batch(5), gw.key, gw.gateway_id) for gw in fleet for _ in range(3)]  # 100 each
    items.insert(3, item(big.batch(40), big.key, big.gateway_id))  # 800 readings: a piece of its own
    items.insert(5, item(mixed_batches()[0][:-1] + b"\x00"))  # a bad signature in the middle
    assert_group_is_each_alone(items)
    assert sizes == [[100, 100], [100], [800], [100, 100], [100]]


@pytest.mark.usefixtures("without_the_coder")
def test_a_group_with_circular_steps_decodes_exactly_as_each_batch_alone() -> None:
    """A wind vane at 10 degrees veering back and forth across north (predictor [M, a], 3.2.8)."""
    rng = np.random.default_rng(1)
    sectors = np.cumsum((rng.random(3000) < 0.2) * rng.integers(-2, 3, 3000)) % 36 + 1
    vane = np.where(rng.random(3000) < 0.01, 0.0, 10.0 * sectors)
    table = [SeriesInfo("vane", "wind_from_direction", "deg", 10.0, 1000)]
    blob = wire.sign(body(13, table, readings_of(np.zeros(3000), vane, step_ms=3_600_000)), KEY, KID)
    predictors = cbor2.loads(body_cbor(parse_sign1(blob).payload))[5][10]
    assert isinstance(predictors[0], list) and predictors[0][0] == 37  # 0..36 tens of degrees
    items = [item(b) for b in mixed_batches()[:2]] + [item(blob)] + [item(b) for b in _modelled_batches()]
    assert_group_is_each_alone(items)
    assert all(isinstance(r, Batch) for r in verify_group(items))
