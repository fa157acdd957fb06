"""Batches written by older agents (kept in an outbox across an upgrade) still verify and decode.

`data/batch-v1.cose` and `data/batch-v2.cose` were written by the encoders of wire format versions 1
(commit 78ee996) and 2 (commit 5e5324a), `data/batch_v3_compression.cose` by version 3 (commit
fead6ee: five series of the shared data with a daily predictor, all three column methods, a grid,
exceptions, quality flags, a lossless series and a gap), `data/batch_v4_declaring.cose` and
`data/batch_v4_referring.cose` by version 4 (commit 812bc3b: the version-3 fixture's readings, the
first declaring its series catalogue, the second referring to it), `data/batch_v5_tagged_rollover.cose`
by version 5 in the tagged envelope (commit 1d867c3, the last writer of that envelope: the version-4
fixture's readings and gap, seq 8, announcing the key of 32 bytes 0x06), `data/batch_v5_declaring.cose` by
version 5 (commit 1d867c3: the same readings and gap with a grid, three coding groups, the daily
predictor, sparse, PPMd and method-7 columns, every count stated); the JSON beside each holds what
that version's own reader decoded (values as float.hex, so NaN, infinities and -0.0 compare exactly).
"""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.wire import (
    FORMAT_VERSION,
    NO_EPOCH,
    READABLE_VERSIONS,
    Keyring,
    KnownCatalogues,
    ReadingColumns,
    encode_batch,
    kid_for,
    sign,
    verify_and_decode,
)
from gateway.wire.body import body_cbor
from gateway.wire.cose import parse_sign1
from kernel.errors import MalformedBatch

DATA = Path(__file__).parent / "data"
KEY = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)


STORED = {
    1: "batch-v1",
    2: "batch-v2",
    3: "batch_v3_compression",
    4: "batch_v4_declaring",
    5: "batch_v5_declaring",
}


@pytest.mark.parametrize("version", sorted(STORED))
def test_a_stored_batch_of_an_older_version_decodes_as_its_own_reader_did(version: int) -> None:
    assert version in READABLE_VERSIONS
    blob = (DATA / f"{STORED[version]}.cose").read_bytes()
    expected = json.loads((DATA / f"{STORED[version]}.json").read_text())
    ring = Keyring()
    ring.add("gw-fixture", KEY.public_key())
    batch = verify_and_decode(blob, ring)
    assert (batch.version, batch.gateway_id, batch.seq) == (version, expected["gateway_id"], expected["seq"])
    assert batch.epoch == (NO_EPOCH if version == 1 else bytes(range(16)))
    readings = batch.readings
    assert readings.series.tolist() == expected["series"]
    assert readings.ts_ms.tolist() == expected["ts_ms"]
    assert readings.quality.tolist() == expected["quality"]
    assert [float(v).hex() for v in readings.value.tolist()] == expected["value"]
    assert [[g.series, g.from_ms, g.to_ms, g.count, g.reason] for g in batch.gaps] == expected["gaps"]


def _signed(fields: dict[int, object]) -> bytes:
    return sign(zstandard.ZstdCompressor().compress(cbor2.dumps(fields)), KEY, kid_for(KEY.public_key()))


def test_versions_4_and_5_leave_the_zero_epoch_out_and_keep_a_real_one() -> None:
    ring = Keyring()
    ring.add("gw-fixture", KEY.public_key())
    sizes = {}
    for epoch in (NO_EPOCH, bytes(range(16))):
        body = encode_batch(
            gateway_id="gw-fixture",
            seq=1,
            created_ms=0,
            series=[],
            readings=ReadingColumns.empty(),
            epoch=epoch,
        )
        fields = cbor2.loads(body_cbor(body))
        assert fields[0] == FORMAT_VERSION == 6
        assert (9 in fields) == (epoch != NO_EPOCH)
        assert verify_and_decode(sign(body, KEY, kid_for(KEY.public_key())), ring).epoch == epoch
        sizes[epoch] = len(body)
    assert sizes[NO_EPOCH] < sizes[bytes(range(16))]


@pytest.mark.parametrize("version", [2, 3])
def test_a_version_2_or_3_body_without_its_epoch_is_malformed(version: int) -> None:
    ring = Keyring()
    ring.add("gw-fixture", KEY.public_key())
    with pytest.raises(MalformedBatch):
        verify_and_decode(_signed({0: version, 1: "gw-fixture", 2: 1, 3: 0, 4: []}), ring)


def test_a_stored_version_3_batch_decodes_with_its_own_series_table() -> None:
    """`data/batch_v3_catalogue.cose` was written by the version-3 encoder (commit fead6ee), from the
    readings of the version-2 fixture: a version-3 batch always carries its whole series table, and a
    reader of version 4 (series catalogues) must not need a catalogue for it."""
    blob = (DATA / "batch_v3_catalogue.cose").read_bytes()
    expected = json.loads((DATA / "batch_v3_catalogue.json").read_text())
    ring = Keyring()
    ring.add("gw-fixture", KEY.public_key())
    batch = verify_and_decode(blob, ring)
    assert (batch.version, batch.gateway_id, batch.seq) == (3, expected["gateway_id"], expected["seq"])
    assert batch.epoch == bytes(range(16))
    table = [[s.sensor, s.quantity, s.unit, s.resolution, s.time_resolution_ms] for s in batch.series]
    assert table == expected["series_table"]
    readings = batch.readings
    assert readings.series.tolist() == expected["series"]
    assert readings.ts_ms.tolist() == expected["ts_ms"]
    assert [float(v).hex() for v in readings.value.tolist()] == expected["value"]
    assert [[g.series, g.from_ms, g.to_ms, g.count, g.reason] for g in batch.gaps] == expected["gaps"]


def test_a_stored_version_4_batch_that_refers_to_its_catalogue_decodes_with_the_declaring_one() -> None:
    """An outbox after the upgrade to version 5 still holds version-4 batches that name a catalogue a
    version-4 batch declared: both decode, and a version-5 declaration of the same table has the
    same catalogue id (it hashes the version-4 form of the table)."""
    ring = Keyring()
    ring.add("gw-fixture", KEY.public_key())
    known = KnownCatalogues()
    declaring, referring = (
        known.learn(verify_and_decode((DATA / f"{name}.cose").read_bytes(), ring, known.lookup))
        for name in ("batch_v4_declaring", "batch_v4_referring")
    )
    expected = json.loads((DATA / "batch_v4_referring.json").read_text())
    assert (referring.version, referring.gateway_id, referring.seq) == (4, "gw-fixture", expected["seq"])
    assert referring.created_ms == expected["created_ms"] == 1_764_150_000_123  # version 4 keeps the ms
    assert referring.catalogue.hex() == declaring.catalogue.hex() == expected["catalogue"]
    assert [float(v).hex() for v in referring.readings.value.tolist()] == expected["value"]
    assert referring.readings.ts_ms.tolist() == expected["ts_ms"]
    body = encode_batch(
        gateway_id="gw-fixture", seq=9, created_ms=0, series=declaring.series, readings=ReadingColumns.empty()
    )
    now = verify_and_decode(sign(body, KEY, kid_for(KEY.public_key())), ring)
    assert (now.version, now.catalogue, now.catalogue_table) == (
        6,
        declaring.catalogue,
        declaring.catalogue_table,
    )


def test_a_version_5_batch_in_the_tagged_envelope_of_earlier_writers_decodes_as_its_reader_did() -> None:
    """What an outbox sealed before the compact envelope holds: tag 18, {1: -8, 4: <8-byte kid>}, and a
    rollover proof that names that 8-byte kid."""
    blob = (DATA / "batch_v5_tagged_rollover.cose").read_bytes()
    expected = json.loads((DATA / "batch_v5_tagged_rollover.json").read_text())
    assert cbor2.loads(blob).tag == 18
    ring = Keyring()
    ring.add("gw-fixture", KEY.public_key())
    batch = verify_and_decode(blob, ring)
    assert (batch.version, batch.gateway_id, batch.seq) == (5, expected["gateway_id"], expected["seq"])
    assert batch.kid.hex() == expected["kid"] == kid_for(KEY.public_key()).hex()
    assert batch.rollover is not None
    assert batch.rollover.new_public_key.hex() == expected["rollover_new_public_key"]
    assert batch.readings.ts_ms.tolist() == expected["ts_ms"]
    assert [float(v).hex() for v in batch.readings.value.tolist()] == expected["value"]
    assert [[g.series, g.from_ms, g.to_ms, g.count, g.reason] for g in batch.gaps] == expected["gaps"]
    # re-signed in the compact envelope, the same body decodes alike and the same proof holds
    compact = sign(parse_sign1(blob).payload, KEY, kid_for(KEY.public_key()))
    again = verify_and_decode(compact, ring)
    assert (again.kid, again.rollover, again.digest != batch.digest) == (batch.kid, batch.rollover, True)
