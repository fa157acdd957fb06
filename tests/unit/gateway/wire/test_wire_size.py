"""Batches are never more than 1 % larger than the plain baseline, whatever the series look like.

The *plain baseline* (issue 17) carries the same integers the simplest way: timestamp second
differences and value steps (per series, in table order) as zigzag LEB128 varints, zstd level 3.
It is measured inside the same batch: envelope, header, counts and heads unchanged, only the two
columns replaced by varints (method 0) and the predictors, grids and groups dropped. So the
comparison is of the column coding alone; bench/wire_bench.py compares whole batches of real
series with the issue's flat 110-byte envelope instead.
"""

from __future__ import annotations

from typing import Any

import cbor2
import numpy as np
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire import ReadingColumns, SeriesInfo, encode_batch, kid_for, sign
from gateway.wire.body import body_cbor
from gateway.wire.scale import quantise, scale_of
from gateway.wire.varint import pack as pack_varints

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
T0 = 1_764_150_000_000
SHAPES = (
    "constant",
    "rare_steps",
    "periodic",
    "random_walk",
    "smooth_noise",
    "sparse_spikes",
    "counter",
)


def shape(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n values (in resolution units, before rounding) of one kind of series."""
    i = np.arange(n)
    if kind == "constant":
        return np.full(n, float(rng.integers(-1000, 1000)))
    if kind == "rare_steps":
        return np.cumsum(np.where(rng.random(n) < 0.01, rng.integers(-50, 50, n), 0)).astype(float)
    if kind == "periodic":
        period = rng.choice([24, 60, 144, 1440])
        return rng.uniform(5, 5000) * np.sin(2 * np.pi * i / period) + rng.normal(0, rng.uniform(0, 3), n)
    if kind == "random_walk":
        return np.cumsum(rng.normal(0, rng.uniform(0.5, 300), n))
    if kind == "smooth_noise":
        return 800 * np.sin(i / rng.uniform(30, 600)) + rng.normal(0, rng.uniform(0.3, 20), n)
    if kind == "sparse_spikes":
        return np.where(rng.random(n) < 0.02, rng.uniform(100, 10_000, n), 0.0) + rng.integers(0, 2, n)
    return np.cumsum(rng.integers(0, rng.integers(1, 20), n)).astype(float)  # counter


def timestamps(n: int, interval_s: int, jitter_ms: int, gaps: bool, rng: np.random.Generator) -> np.ndarray:
    slots = np.cumsum(np.where(rng.random(n) < 0.03, rng.integers(2, 50, n), 1)) if gaps else np.arange(n)
    return T0 + slots * interval_s * 1000 + rng.integers(-jitter_ms, jitter_ms + 1, n)


#: (shape, readings, resolution, interval in s, jitter in ms, gaps) of each series of a batch
Recipe = tuple[str, int, float, int, int, bool]
RECIPES = st.lists(
    st.tuples(
        st.sampled_from(SHAPES),
        st.integers(300, 3000),
        st.sampled_from([1.0, 0.1, 0.01, 0.001, 0.5, 10.0]),
        st.sampled_from([1, 10, 60, 600, 3600]),
        st.sampled_from([0, 200]),
        st.booleans(),
    ),
    min_size=1,
    max_size=3,  # several series: mixed resolutions and shapes in one batch
)


def build(recipes: list[Recipe], seed: int) -> tuple[list[SeriesInfo], ReadingColumns]:
    rng = np.random.default_rng(seed)
    table, parts = [], []
    for s, (kind, n, resolution, interval, jitter, gaps) in enumerate(recipes):
        ts = timestamps(n, interval, jitter, gaps, rng)
        table.append(SeriesInfo(f"sensor-{s}", kind, "1", resolution, 1000))
        parts.append((np.full(n, s), ts, np.round(shape(kind, n, rng)) * resolution))
    series, ts, values = (np.concatenate(column) for column in zip(*parts, strict=True))
    return table, ReadingColumns(series, ts, values, np.zeros(series.size, np.uint16))


def plain_readings(table: list[SeriesInfo], columns: ReadingColumns, ours: dict[int, Any]) -> dict[int, Any]:
    """Our readings map with the timestamp and value columns as plain varints."""
    dods, steps = [], []
    for s, info in enumerate(table):
        mine = columns.series == s
        order = np.argsort(columns.ts_ms[mine], kind="stable")
        t = (columns.ts_ms[mine][order] + 500) // 1000
        scale = scale_of(info.resolution)
        assert scale is not None
        dods.append(np.diff(np.diff(t), prepend=0))
        steps.append(np.diff(quantise(columns.value[mine][order], scale)[0]))
    plain = {key: ours[key] for key in (0, 1) if key in ours}  # version 5: no key 1
    plain[2] = b"\x00" + pack_varints(np.concatenate(dods))
    plain[3] = [b"\x00" + pack_varints(np.concatenate(steps))]
    return plain


@settings(max_examples=40, deadline=None)
@given(RECIPES, st.integers(0, 2**32))
def test_a_batch_is_never_more_than_one_percent_above_the_plain_baseline(
    recipes: list[Recipe], seed: int
) -> None:
    table, columns = build(recipes, seed)
    body = encode_batch(gateway_id="gw-size", seq=1, created_ms=T0, series=table, readings=columns)
    ours = len(sign(body, KEY, kid_for(KEY.public_key())))
    fields = cbor2.loads(body_cbor(body))
    fields[5] = plain_readings(table, columns, fields[5])
    plain_body = zstandard.ZstdCompressor(level=3).compress(cbor2.dumps(fields))
    baseline = ours - len(body) + len(plain_body)
    assert ours <= 1.01 * baseline, f"{ours} bytes, plain baseline {baseline}"
