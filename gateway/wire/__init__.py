"""The signed, compact, versioned batch format (docs/wire-format.md): pure functions over bytes.

A backend needs only this package (plus numpy, cbor2, zstandard, cryptography and the standard
library's lzma) to verify batches.
"""

from __future__ import annotations

from gateway.wire.batch import (
    EPOCH_LENGTH,
    FORMAT_VERSION,
    NO_EPOCH,
    READABLE_VERSIONS,
    Batch,
    Event,
    Gap,
    KeyRollover,
    ReadingColumns,
    SeriesInfo,
    WindowColumns,
)
from gateway.wire.body import catalogue_series, encode_batch
from gateway.wire.catalogue import CATALOGUE_ID_LENGTH, CatalogueLookup, KnownCatalogues, catalogue_of
from gateway.wire.cose import MEDIA_TYPE, Envelope, sign
from gateway.wire.rollover import make_rollover
from gateway.wire.trusted_keys import (
    KID_HINT_LENGTH,
    KID_LENGTH,
    Keyring,
    hint_taken,
    kid_for,
    kid_hint,
    names_key,
)
from gateway.wire.verify import verify_and_decode, verify_message, verify_with_key

__all__ = [
    "CATALOGUE_ID_LENGTH",
    "EPOCH_LENGTH",
    "FORMAT_VERSION",
    "KID_HINT_LENGTH",
    "KID_LENGTH",
    "MEDIA_TYPE",
    "NO_EPOCH",
    "READABLE_VERSIONS",
    "Batch",
    "CatalogueLookup",
    "Envelope",
    "Event",
    "Gap",
    "KeyRollover",
    "Keyring",
    "KnownCatalogues",
    "ReadingColumns",
    "SeriesInfo",
    "WindowColumns",
    "catalogue_of",
    "catalogue_series",
    "encode_batch",
    "hint_taken",
    "kid_for",
    "kid_hint",
    "make_rollover",
    "names_key",
    "sign",
    "verify_and_decode",
    "verify_message",
    "verify_with_key",
]
