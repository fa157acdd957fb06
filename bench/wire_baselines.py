"""Single-series batches of the shared real series, the plain baseline of issue 17, and Gorilla.

Each series of ../shared/data/sensor-series and ../shared/data/more-series is encoded alone, as
`gateway wire encode` does it (zero epoch): its first 6,000 readings (missing ones skipped), 1 s time
resolution, the resolution its folder's README states; NEON lines are laid 60 s apart with +-200 ms
jitter as in the main benchmark. The *plain baseline* carries the same integers the simplest way: the first timestamp and
value, then timestamp second differences and value steps as zigzag LEB128 varints, in a CBOR array,
zstd level 3, plus 110 bytes for the envelope (signature, kid, header). The ratio of a series is
our signed batch's size over that baseline. Gorilla (Pelkonen et al., VLDB 2015: delta-of-delta
timestamps in 2-36 bit buckets, XOR-coded float64 values) is sized the same way for context.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cbor2
import numpy as np
import zstandard

from gateway.wire import ReadingColumns, SeriesInfo
from gateway.wire.varint import pack as pack_varints

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
READINGS = 6_000
ENVELOPE_BYTES = 110
BASELINE_LEVEL = 3
#: more-series unit and resolution by quantity (more-series/README.md)
MORE_RESOLUTION = {
    "air_temperature": ("Cel", 0.1),
    "dew_point": ("Cel", 0.1),
    "relative_humidity": ("%RH", 1.0),
    "air_pressure": ("hPa", 1.0),
    "wind_direction": ("deg", 10.0),
    "wind_speed": ("m/s", 0.1),
    "global_irradiance": ("W/m2", 1.0),
    "precipitation": ("mm", 0.001),
    "pm2_5": ("g/m3", 0.000001),
    "pm10": ("g/m3", 0.000001),
}
#: sensor-series resolutions (sensor-series/README.md: the decimals each file uses)
NEON_RESOLUTION = {
    "IR-bio-temp": ("surface_temperature", "Cel", 0.01),
    "Air-pressure": ("air_pressure", "kPa", 0.00001),
    "PM10-dust": ("pm10", "mg/m3", 0.001),
    "Dew-point-temp": ("dew_point", "Cel", 0.01),
    "Wind-Speed": ("wind_speed", "m/s", 0.01),
}
NEON_INTERVAL_MS, NEON_JITTER_MS, T0 = 60_000, 200, 1_764_000_000_000


@dataclass(frozen=True)
class AloneSeries:
    """One series as a one-row batch: its name, table row and readings."""

    name: str
    info: SeriesInfo
    columns: ReadingColumns
    more: bool  # from more-series (else sensor-series)


def alone_series(rng: np.random.Generator) -> list[AloneSeries]:
    """Every shared series, its first READINGS readings, in a fixed order (NEON first)."""
    out = []
    for stem, (quantity, unit, resolution) in NEON_RESOLUTION.items():
        lines = (SHARED / "sensor-series" / f"{stem}.csv").read_text().splitlines()[:READINGS]
        values = np.array([float(x.strip().strip('"') or "nan") for x in lines])
        slot = np.arange(values.size)
        ts = T0 + slot * NEON_INTERVAL_MS + rng.integers(-NEON_JITTER_MS, NEON_JITTER_MS + 1, values.size)
        out.append(_alone(stem, SeriesInfo("neon", quantity, unit, resolution, 1000), ts, values, more=False))
    for path in sorted((SHARED / "more-series").glob("*.csv")):
        with path.open() as f:
            rows = list(csv.DictReader(f))[:READINGS]
        quantity = next(q for q in MORE_RESOLUTION if path.stem.endswith(q))
        unit, resolution = MORE_RESOLUTION[quantity]
        station = path.stem.removesuffix(f"-{quantity}")
        ts = np.array([int(r["ts_ms"]) for r in rows], np.int64)
        values = np.array([float(r["value"] or "nan") for r in rows])
        info = SeriesInfo(station, quantity, unit, resolution, 1000)
        out.append(_alone(path.stem, info, ts, values, more=True))
    return out


def _alone(name: str, info: SeriesInfo, ts: np.ndarray, values: np.ndarray, more: bool) -> AloneSeries:
    present = ~np.isnan(values)
    columns = ReadingColumns(
        series=np.zeros(int(present.sum()), np.int32),
        ts_ms=ts[present],
        value=values[present],
        quality=np.zeros(int(present.sum()), np.uint16),
    )
    return AloneSeries(name, info, columns, more)


def plain_baseline_bytes(series: AloneSeries) -> int:
    """The plain baseline: heads, varint dod timestamps and value steps, CBOR, zstd 3, + envelope."""
    t = (series.columns.ts_ms + 500) // 1000
    q = np.rint(series.columns.value / series.info.resolution).astype(np.int64)
    dod = np.diff(np.diff(t), prepend=0)
    body = cbor2.dumps([int(t[0]), int(q[0]), pack_varints(dod), pack_varints(np.diff(q))])
    return len(zstandard.ZstdCompressor(level=BASELINE_LEVEL).compress(body)) + ENVELOPE_BYTES


def gorilla_bytes(series: AloneSeries) -> int:
    """Gorilla's size of the same readings (seconds, float64 values at the resolution) + envelope."""
    t = (series.columns.ts_ms + 500) // 1000
    q = np.rint(series.columns.value / series.info.resolution)
    values = (q * series.info.resolution).astype("<f8").view(np.uint64)
    bits = 64 + 64 + _gorilla_time_bits(np.diff(np.diff(t), prepend=0)) + _gorilla_value_bits(values)
    return (bits + 7) // 8 + ENVELOPE_BYTES


def _gorilla_time_bits(dod: np.ndarray) -> int:
    """Buckets of the paper: 0 -> 1 bit, |dod| <= 63: 9, <= 255: 12, <= 2047: 16, else 36."""
    magnitude = np.abs(dod)
    bits = np.select(
        [dod == 0, magnitude <= 64, magnitude <= 256, magnitude <= 2048], [1, 2 + 7, 3 + 9, 4 + 12], 4 + 32
    )
    return int(bits.sum())


def _gorilla_value_bits(values: np.ndarray) -> int:
    """XOR with the previous value: 1 bit when equal, else the meaningful bits in a reused or new window."""
    total, window = 0, (65, 0)  # (leading zeros, trailing zeros) of the current window; none yet
    for x in np.bitwise_xor(values[1:], values[:-1]).tolist():
        if x == 0:
            total += 1
            continue
        leading = min(64 - x.bit_length(), 31)  # 5 bits of leading-zero count
        trailing = (x & -x).bit_length() - 1
        if leading >= window[0] and trailing >= window[1]:
            total += 2 + 64 - window[0] - window[1]
        else:
            total += 2 + 5 + 6 + 64 - leading - trailing
            window = (leading, trailing)
    return total


if __name__ == "__main__":
    # run alone: the two reference sizes per series that bench/wire_bench.py compares the format against
    import json

    every = alone_series(np.random.default_rng(0))
    print(
        json.dumps(
            {
                "series": len(every),
                "plain_baseline_bytes": {s.name: plain_baseline_bytes(s) for s in every},
                "gorilla_bytes": {s.name: gorilla_bytes(s) for s in every},
            }
        )
    )
