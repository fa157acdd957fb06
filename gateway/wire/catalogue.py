"""Series catalogues (wire version 4): a series table declared once and referred to by its content hash.

A batch either carries its whole series table (body key 4), which *declares* the catalogue whose id is
the first 8 bytes of SHA-256 over the table's deterministic CBOR, or only that id (body key 11). A
30-series table is about 600 bytes of CBOR and still about 250 after zstd, more than the readings of
a 15-minute batch of street sensors (bench/air_bench.py), so a gateway declares it at the start of
an epoch, when it changes and every few batches, and refers to it in between (docs/wire-format.md,
section 3.5). The id is a content hash, so the signature of a referring batch binds it to the exact
table, and a receiver can check any table it is offered against the id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import cbor2

from gateway.wire.batch import Batch, SeriesInfo
from gateway.wire.scale import scale_of

#: bytes of a catalogue id: 64 bits of SHA-256. Only the gateway's own key can sign a table, so a
#: collision would have to be made by the gateway against itself; per gateway a few hundred tables
#: over its life leave the chance of an accidental one below 1e-14
CATALOGUE_ID_LENGTH = 8

#: what a reader asks when a batch refers to a catalogue: the table, or None when it has not seen it
CatalogueLookup = Callable[[bytes], "tuple[SeriesInfo, ...] | None"]


def series_rows(series: Sequence[SeriesInfo]) -> list[list[Any]]:
    """The series table as it travels at body key 4."""
    return [[s.sensor, s.quantity, s.unit, scale_of(s.resolution), int(s.time_resolution_ms)] for s in series]


def table_cbor(rows: Sequence[object]) -> bytes:
    """The deterministic CBOR of a series table as received (RFC 8949 4.2.1: shortest heads, floats in
    the shortest of 16, 32 or 64 bits that keeps their value): what the catalogue id hashes and what a
    receiver keeps."""
    return cbor2.dumps(list(rows), canonical=True)


def catalogue_id(rows: Sequence[object]) -> bytes:
    """The id of the catalogue a table declares: SHA-256 over `table_cbor(rows)`, first 8 bytes."""
    return catalogue_id_of_cbor(table_cbor(rows))


def catalogue_id_of_cbor(cbor: bytes) -> bytes:
    """The id of a table kept as its deterministic CBOR."""
    return hashlib.sha256(cbor).digest()[:CATALOGUE_ID_LENGTH]


def catalogue_of(series: Sequence[SeriesInfo]) -> bytes:
    """The id of the catalogue a writer declares with `series` (the agent's resend rule keys on it)."""
    return catalogue_id(series_rows(series))


class KnownCatalogues:
    """The catalogues of one gateway learned from its declaring batches, for a reader that decodes its
    batches in order (tools, tests): `verify_with_key(blob, key, known.lookup)`, then `known.learn(batch)`."""

    def __init__(self) -> None:
        self._tables: dict[bytes, tuple[SeriesInfo, ...]] = {}

    def lookup(self, catalogue: bytes) -> tuple[SeriesInfo, ...] | None:
        """The table declared as `catalogue`, or None."""
        return self._tables.get(catalogue)

    def learn(self, batch: Batch) -> Batch:
        """Keep the catalogue `batch` declares (if it does); returns `batch`."""
        if batch.catalogue_table:
            self._tables[batch.catalogue] = batch.series
        return batch
