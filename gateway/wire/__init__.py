"""The signed, compact, versioned batch format (docs/wire-format.md): pure functions over bytes.

A backend needs only this package (plus numpy, cbor2, zstandard, cryptography) to verify batches.
"""

from __future__ import annotations

from gateway.wire.batch import (
    FORMAT_VERSION,
    Batch,
    Event,
    Gap,
    ReadingColumns,
    SeriesInfo,
    WindowColumns,
)
from gateway.wire.body import encode_batch
from gateway.wire.cose import MEDIA_TYPE, sign
from gateway.wire.keyring import Keyring, kid_for
from gateway.wire.verify import verify_and_decode, verify_with_key

__all__ = [
    "FORMAT_VERSION",
    "MEDIA_TYPE",
    "Batch",
    "Event",
    "Gap",
    "Keyring",
    "ReadingColumns",
    "SeriesInfo",
    "WindowColumns",
    "encode_batch",
    "kid_for",
    "sign",
    "verify_and_decode",
    "verify_with_key",
]
