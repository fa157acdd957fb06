"""The chunk codec: whatever readings go in come out bit for bit, in canonical (ts) order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from buffer import chunk

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-10_000, max_value=10_000, places=3).map(float),
    st.sampled_from([0.0, -0.0, 5e-324, 1e300, 12.34, 0.1, 1013.25]),
)
reading = st.tuples(
    st.integers(0, 40),  # series id
    st.integers(-(2**40), 2**41),  # ts ms
    floats,
    st.integers(0, 0xFFFF),  # quality
)


def columns(rows: list[tuple[int, int, float, int]]) -> tuple[np.ndarray, ...]:
    series = np.array([r[0] for r in rows], np.int32)
    ts = np.array([r[1] for r in rows], np.int64)
    value = np.array([r[2] for r in rows], np.float64)
    quality = np.array([r[3] for r in rows], np.uint16)
    return series, ts, value, quality


def canonical(rows: list[tuple[int, int, float, int]]) -> list[tuple[int, int, int, int]]:
    """What the chunk must give back: sorted by ts; ties by (series, ts) storage order."""
    keyed = sorted(rows, key=lambda r: (r[0], r[1]))
    keyed.sort(key=lambda r: r[1])
    return [(s, t, int(np.float64(v).view(np.int64)), q) for s, t, v, q in keyed]


def decoded(c: chunk.Columns) -> list[tuple[int, int, int, int]]:
    return list(
        zip(
            c.series.tolist(),
            c.ts_ms.tolist(),
            c.value.view(np.int64).tolist(),
            c.quality.tolist(),
            strict=True,
        )
    )


@settings(max_examples=250, deadline=None)
@given(st.lists(reading, min_size=1, max_size=60))
def test_round_trip_is_bit_exact(rows: list[tuple[int, int, float, int]]) -> None:
    packed = chunk.pack(*columns(rows))
    assert packed.n == len(rows)
    assert packed.min_ts == min(r[1] for r in rows) and packed.max_ts == max(r[1] for r in rows)
    out = chunk.unpack(packed.n, packed.min_ts, packed.scale, packed.data)
    assert decoded(out) == canonical(rows)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(reading, min_size=1, max_size=20), min_size=1, max_size=6))
def test_many_chunks_decode_like_each_alone(chunks: list[list[tuple[int, int, float, int]]]) -> None:
    packed = [chunk.pack(*columns(rows)) for rows in chunks]
    together = chunk.unpack_many([(p.n, p.min_ts, p.scale, p.data) for p in packed])
    alone = [decoded(chunk.unpack(p.n, p.min_ts, p.scale, p.data)) for p in packed]
    assert decoded(together) == [r for rows in alone for r in rows]


def test_real_decimal_data_is_small() -> None:
    rng = np.random.default_rng(7)
    n = 500
    series = np.repeat(np.arange(16, dtype=np.int32), n // 16 + 1)[:n]
    ts = (1_780_000_000_000 + np.arange(n) // 16 * 1000 + rng.integers(0, 20, n)).astype(np.int64)
    value = np.round(1013.25 + np.cumsum(rng.normal(0, 0.05, n)), 2)
    packed = chunk.pack(series, ts, value, np.zeros(n, np.uint16))
    assert packed.scale == 2
    assert len(packed.data) < n * 4  # a plain row would be 22+ bytes per reading
