"""SHA-256 of every unsigned batch the wire benchmark encodes: a speed change must leave it unchanged.

Encodes the NEON batches of bench/wire_bench.py, its mixed batches and the alone-series batches (the
same seeded generator, consumed in the same order) and prints one digest per group and one over all.
Run it on two trees and compare the last line: equal digests mean byte-identical encoder output.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from wire_baselines import alone_series
from wire_bench import GATEWAY, STEMS, T0, SeriesBatch, batches, encode_alone, mixed_batches

from gateway.wire import encode_batch


def digest(blobs: list[bytes]) -> str:
    """One SHA-256 over the per-batch SHA-256s, so that a moved boundary also changes it."""
    whole = hashlib.sha256()
    for blob in blobs:
        whole.update(hashlib.sha256(blob).digest())
    return whole.hexdigest()


def unsigned(group: list[SeriesBatch]) -> list[bytes]:
    return [
        encode_batch(gateway_id=GATEWAY, seq=i, created_ms=T0, series=b.table, readings=b.columns)
        for i, b in enumerate(group)
    ]


def main() -> None:
    rng = np.random.default_rng(20261126)
    per_stem = {stem: batches(stem, rng) for stem in STEMS}
    neon = unsigned([b for stem in STEMS for b in per_stem[stem]])
    mixed = unsigned(mixed_batches(per_stem))
    alone = [encode_alone(series) for series in alone_series(rng)]
    result = {
        "neon": [len(neon), digest(neon)],
        "mixed": [len(mixed), digest(mixed)],
        "alone": [len(alone), digest(alone)],
        "all": digest(neon + mixed + alone),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
