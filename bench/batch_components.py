"""What each part of a profile-(b) batch costs: the same 57-s batches, one part removed at a time.

Takes the readings a receiver stored in a run of bench/air_bench.py (`AIR_BENCH_KEEP=1
AIR_BENCH_PROFILES=b`, then `receiver.db` in the kept folder), cuts them into the agent's 57-s batches
(bench/air_batch_lengths.py's cut: catalogue referred to, series in catalogue order), and for each
part of the body re-compresses the body without it (`body._smallest_frame`, the writer's own choice
of frame). A part's cost is the mean of what its removal saves, so the parts do not add up exactly to
the body (zstd codes them together). `envelope` is the signed batch less its body. `zstd dictionary
(first body)` is what the later batches would save compressed with the first batch's body as a zstd
dictionary: an estimate of state declared once for the value columns, not part of the format.

Usage: `.venv/bin/python bench/batch_components.py RECEIVER_DB [LENGTH_S]`. Prints one line per part,
then ONE JSON object as the last line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))

from air_batch_lengths import K, in_catalogue_order
from air_bench import received_readings

from gateway import wire
from gateway.wire import body as body_codec
from gateway.wire import readings as readings_codec

Body = dict[int, Any]


def _without(*keys: int) -> Callable[[Body], Body]:
    return lambda b: {k: v for k, v in b.items() if k not in keys}


def _readings_without(*keys: int) -> Callable[[Body], Body]:
    def cut(b: Body) -> Body:
        return {**b, body_codec.READINGS: {k: v for k, v in b[body_codec.READINGS].items() if k not in keys}}

    return cut


PARTS: dict[str, Callable[[Body], Body]] = {
    "epoch (key 9)": _without(body_codec.EPOCH),
    "catalogue id (key 11)": _without(body_codec.CATALOGUE),
    "version, seq, created (keys 0, 2, 3)": _without(body_codec.VERSION, body_codec.SEQ, body_codec.CREATED),
    "counts and heads (readings 0, 1)": _readings_without(0, 1),
    "timestamps (readings 2)": _readings_without(2),
    "plain steps (readings 3)": _readings_without(3),
    "grids (readings 7, 8)": _readings_without(7, 8),
    "groups, predictors (readings 9, 10)": _readings_without(9, 10),
    "quality (readings 5)": _readings_without(5),
}


def dictionary_saving(bodies: list[bytes]) -> float:
    """What each later body would save compressed with the first one's CBOR as a zstd dictionary
    (state a declaring batch could leave at a receiver, the way a catalogue does; not in the format)."""
    dictionary = zstandard.ZstdCompressionDict(
        cbor2.dumps(body_of(bodies[0])), dict_type=zstandard.DICT_TYPE_RAWCONTENT
    )
    saved = 0
    for payload in bodies[1:]:
        raw = cbor2.dumps(body_of(payload))
        with_dictionary = min(
            len(
                zstandard.ZstdCompressor(level=level, dict_data=dictionary, write_dict_id=False).compress(raw)
            )
            for level in body_codec.SMALL_BODY_LEVELS
        )
        saved += len(payload) - with_dictionary
    return saved / max(1, len(bodies) - 1)


def body_of(payload: bytes) -> Body:
    """The body map of a signed batch's payload (a zstd frame or plain CBOR)."""
    if payload[:4] == b"\x28\xb5\x2f\xfd":
        payload = zstandard.ZstdDecompressor().decompress(payload)
    fields: Body = cbor2.loads(payload)
    return fields


def batches(series: list[wire.SeriesInfo], columns: wire.ReadingColumns, length_s: float) -> Iterator[bytes]:
    """The bodies of whole batches of `length_s` real seconds, as the agent writes them."""
    span_ms = length_s * 1000 / K
    start, last, seq = float(columns.ts_ms[0]), float(columns.ts_ms[-1]), 2
    while start + span_ms <= last:
        chosen = (columns.ts_ms >= start) & (columns.ts_ms < start + span_ms)
        part = wire.ReadingColumns(
            columns.series[chosen], columns.ts_ms[chosen], columns.value[chosen], columns.quality[chosen]
        )
        yield wire.encode_batch(
            gateway_id="air-b", seq=seq, created_ms=int(start), series=series, readings=part,
            epoch=bytes(range(16)), refer_to_catalogue=True,
        )  # fmt: skip
        start, seq = start + span_ms, seq + 1


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    length = float(sys.argv[2]) if len(sys.argv) > 2 else 57.0
    series, columns = in_catalogue_order(*received_readings(Path(sys.argv[1]), "air-b"))
    key = Ed25519PrivateKey.generate()
    kid = wire.kid_for(key.public_key())
    totals: dict[str, float] = {"signed": 0.0, "body": 0.0, "envelope": 0.0, **dict.fromkeys(PARTS, 0.0)}
    bodies = list(batches(series, columns, length))
    readings = 0
    for payload in bodies:
        signed = len(wire.sign(payload, key, kid))
        fields = body_of(payload)
        readings += sum(readings_codec.counts_and_heads(fields[body_codec.READINGS], series)[0])
        whole = len(body_codec._smallest_frame(fields, None))
        totals["signed"] += signed
        totals["body"] += len(payload)
        totals["envelope"] += signed - len(payload)
        for name, cut in PARTS.items():
            totals[name] += whole - len(body_codec._smallest_frame(cut(fields), None))
    result = {name: round(total / len(bodies), 1) for name, total in totals.items()}
    result["zstd dictionary (first body)"] = round(dictionary_saving(bodies), 1)
    result["readings_per_batch"] = round(readings / len(bodies), 1)
    result["batches"] = len(bodies)
    for name, value in result.items():
        print(f"{name:40s} {value}", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
