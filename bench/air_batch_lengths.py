"""What profile (b) would cost on the air with batches of other lengths: the same readings, re-encoded.

bench/air_bench.py seals a batch of (b) 5 % of its 60-s budget early (57 s of readings a batch). This
takes the readings the receiver stored in one of its runs (`AIR_BENCH_KEEP=1 AIR_BENCH_PROFILES=b`,
then `receiver.db` in the kept folder), cuts them into batches of L real seconds (the benchmark's
time is compressed by 10), encodes and signs each as the agent does on a steady link (the catalogue
referred to, series in catalogue order), and adds what the link carries per batch as traced in
docs/lte.md: 33 bytes of MQTT and TLS around the PUBLISH, the 26-byte PUBACK record, and 52 header
bytes for each data segment (MSS 1,448) and for the three other segments (two ACKs and the PUBACK).

Usage: `.venv/bin/python bench/air_batch_lengths.py RECEIVER_DB [L ...]`. Prints one line per length,
then ONE JSON object as the last line.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))

from air_bench import HEADER_BYTES, MSS, received_readings

from gateway import wire

#: profile (b)'s time compression in bench/air_bench.py
K = 10
#: TLS record header, content type and AEAD tag (5 + 1 + 16), plus the aliased PUBLISH's 11 MQTT bytes
PUBLISH_OVERHEAD = 22 + 11
#: the PUBACK in its TLS record
PUBACK_RECORD = 22 + 4
#: the broker's ACK of the PUBLISH, the PUBACK, the agent's ACK of it
OTHER_SEGMENTS = 3
LENGTHS_S = (30, 40, 50, 57, 58, 60, 90, 120)


def in_catalogue_order(
    series: list[wire.SeriesInfo], columns: wire.ReadingColumns
) -> tuple[list[wire.SeriesInfo], wire.ReadingColumns]:
    """The agent's catalogue lists series by quantity, unit, sensor (gateway/catalogue.py)."""
    order = sorted(range(len(series)), key=lambda i: (series[i].quantity, series[i].unit, series[i].sensor))
    new_index = np.empty(len(series), np.int32)
    new_index[order] = np.arange(len(series), dtype=np.int32)
    renumbered = wire.ReadingColumns(new_index[columns.series], columns.ts_ms, columns.value, columns.quality)
    return [series[i] for i in order], renumbered


def on_air(signed: int) -> int:
    """Bytes on the air of one steady batch cycle carrying `signed` bytes (docs/lte.md's table)."""
    publish = signed + PUBLISH_OVERHEAD
    segments = math.ceil(publish / MSS) + OTHER_SEGMENTS
    return publish + PUBACK_RECORD + HEADER_BYTES * segments


def measure(series: list[wire.SeriesInfo], columns: wire.ReadingColumns, length_s: float) -> dict[str, float]:
    """Whole batches of `length_s` real seconds: per batch and per reading, signed and on the air."""
    key = Ed25519PrivateKey.generate()
    kid = wire.kid_for(key.public_key())
    span_ms = length_s * 1000 / K
    start, last = float(columns.ts_ms[0]), float(columns.ts_ms[-1])
    batches = readings = signed_total = air_total = 0
    while start + span_ms <= last:
        chosen = (columns.ts_ms >= start) & (columns.ts_ms < start + span_ms)
        part = wire.ReadingColumns(
            columns.series[chosen], columns.ts_ms[chosen], columns.value[chosen], columns.quality[chosen]
        )
        body = wire.encode_batch(
            gateway_id="air-b", seq=batches + 2, created_ms=int(start), series=series, readings=part,
            epoch=bytes(range(16)), refer_to_catalogue=True,
        )  # fmt: skip
        signed = len(wire.sign(body, key, kid))
        batches, readings = batches + 1, readings + len(part)
        signed_total, air_total = signed_total + signed, air_total + on_air(signed)
        start += span_ms
    if not batches:
        raise SystemExit(f"fewer than {length_s} s of readings in the database")
    return {
        "length_s": length_s,
        "batches": batches,
        "readings_per_batch": round(readings / batches),
        "signed_per_batch": round(signed_total / batches),
        "signed_bytes_per_reading": round(signed_total / readings, 3),
        "on_air_per_batch": round(air_total / batches),
        "on_air_bytes_per_reading": round(air_total / readings, 3),
    }


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    lengths = [float(a) for a in sys.argv[2:]] or LENGTHS_S
    series, columns = in_catalogue_order(*received_readings(Path(sys.argv[1]), "air-b"))
    results = [measure(series, columns, length) for length in lengths]
    for row in results:
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    print(json.dumps({"lengths": results}))


if __name__ == "__main__":
    main()
