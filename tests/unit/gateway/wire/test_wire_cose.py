"""The COSE_Sign1 envelope: who signed, whether anything changed, and interop with pycose."""

from __future__ import annotations

import cbor2
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycose.algorithms import EdDSA
from pycose.headers import KID, Algorithm
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

from gateway.wire import (
    Envelope,
    Keyring,
    ReadingColumns,
    SeriesInfo,
    encode_batch,
    kid_for,
    sign,
    verify_with_key,
)
from gateway.wire import verify_and_decode as verify
from kernel.errors import BadSignature, MalformedBatch, UnknownKey

T0 = 1_764_150_000_000


def body(gateway_id: str = "gw-1", seq: int = 1, *, name_gateway: bool = False) -> bytes:
    readings = ReadingColumns(
        series=np.zeros(3, np.int32),
        ts_ms=np.array([T0, T0 + 1000, T0 + 2000]),
        value=np.array([1.0, 1.5, 2.0]),
        quality=np.zeros(3, np.uint16),
    )
    return encode_batch(
        gateway_id=gateway_id,
        seq=seq,
        created_ms=T0,
        series=[SeriesInfo("s", "t", "Cel", 0.5)],
        readings=readings,
        name_gateway=name_gateway,
    )


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def ring(key: Ed25519PrivateKey) -> Keyring:
    ring = Keyring()
    ring.add("gw-1", key.public_key())
    return ring


def signed(key: Ed25519PrivateKey, payload: bytes | None = None) -> bytes:
    return sign(body() if payload is None else payload, key, kid_for(key.public_key()))


def test_kid_is_the_sha256_prefix_of_the_raw_public_key() -> None:
    import hashlib

    key = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32).public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert kid_for(key) == hashlib.sha256(raw).digest()[:8]


def test_envelope_is_an_untagged_sign1_with_the_kid_hint_protected_and_no_alg(key: Ed25519PrivateKey) -> None:
    message = cbor2.loads(signed(key))
    assert isinstance(message, list)  # no CBOR tag: the media type and the topic say COSE_Sign1
    protected, unprotected, payload, signature = message
    assert cbor2.loads(protected) == {4: kid_for(key.public_key())[:4]}
    assert len(protected) == 7  # a1 04 44 <4 bytes>: 8 with its head, where the tagged one took 14
    assert dict(unprotected) == {}
    assert payload == body()
    assert len(signature) == 64


def test_the_tagged_envelope_of_earlier_writers_is_still_written_on_request(key: Ed25519PrivateKey) -> None:
    message = cbor2.loads(sign(body(), key, kid_for(key.public_key()), Envelope.TAGGED))
    assert message.tag == 18
    protected, unprotected, payload, signature = message.value
    assert cbor2.loads(protected) == {1: -8, 4: kid_for(key.public_key())}
    assert dict(unprotected) == {}
    assert payload == body()
    assert len(signature) == 64


def test_the_compact_envelope_is_seven_bytes_shorter(key: Ed25519PrivateKey) -> None:
    """85 -> 78 bytes around the payload of a small batch (docs/wire-format.md 1)."""
    payload = body()
    compact, tagged = signed(key, payload), sign(payload, key, kid_for(key.public_key()), Envelope.TAGGED)
    assert len(payload) < 256  # a 2-byte payload head in both
    assert (len(compact) - len(payload), len(tagged) - len(payload)) == (78, 85)


@pytest.mark.parametrize("envelope", list(Envelope))
def test_both_envelopes_verify_to_the_same_batch_and_full_kid(
    key: Ed25519PrivateKey, ring: Keyring, envelope: Envelope
) -> None:
    batch = verify(sign(body(), key, kid_for(key.public_key()), envelope), ring)
    assert (batch.gateway_id, batch.seq, batch.kid) == ("gw-1", 1, kid_for(key.public_key()))
    assert verify_with_key(sign(body(), key, kid_for(key.public_key()), envelope), key.public_key()).seq == 1


def test_an_unknown_kid_hint_is_an_unknown_key(key: Ed25519PrivateKey, ring: Keyring) -> None:
    parts = cbor2.loads(signed(key))
    parts[0] = cbor2.dumps({4: bytes(4)})  # a hostile hint no registered key has
    with pytest.raises(UnknownKey, match="00000000"):
        verify(cbor2.dumps(parts), ring)
    with pytest.raises(UnknownKey, match="00000000"):
        verify_with_key(cbor2.dumps(parts), key.public_key())


def test_a_good_batch_verifies(key: Ed25519PrivateKey, ring: Keyring) -> None:
    assert verify(signed(key), ring).gateway_id == "gw-1"


def test_every_flipped_byte_is_rejected(key: Ed25519PrivateKey, ring: Keyring) -> None:
    blob = signed(key)
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises((BadSignature, MalformedBatch, UnknownKey)):
            verify(bytes(tampered), ring)


def test_a_swapped_payload_fails_the_signature(key: Ed25519PrivateKey, ring: Keyring) -> None:
    protected, _, _, signature = cbor2.loads(signed(key))
    forged = cbor2.dumps([protected, {}, body(seq=2), signature])
    with pytest.raises(BadSignature):
        verify(forged, ring)
    protected, _, _, signature = cbor2.loads(
        sign(body(), key, kid_for(key.public_key()), Envelope.TAGGED)
    ).value
    with pytest.raises(BadSignature):
        verify(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, body(seq=2), signature])), ring)


def test_an_unregistered_key_is_unknown(ring: Keyring) -> None:
    with pytest.raises(UnknownKey):
        verify(signed(Ed25519PrivateKey.generate()), ring)


def test_a_rotated_out_key_is_accepted_until_retired(key: Ed25519PrivateKey, ring: Keyring) -> None:
    new_key = Ed25519PrivateKey.generate()
    ring.add("gw-1", new_key.public_key())
    old_batch = signed(key)
    assert verify(old_batch, ring).seq == 1
    assert verify(signed(new_key), ring).seq == 1
    ring.retire(kid_for(key.public_key()))
    with pytest.raises(UnknownKey, match="retired"):
        verify(old_batch, ring)
    assert verify(signed(new_key), ring).seq == 1


def test_a_gateway_cannot_sign_for_another(key: Ed25519PrivateKey, ring: Keyring) -> None:
    with pytest.raises(BadSignature, match="belongs to gateway 'gw-1'"):
        verify(signed(key, body(gateway_id="gw-2", name_gateway=True)), ring)


def test_a_body_that_names_no_gateway_speaks_for_the_gateway_of_its_key(
    key: Ed25519PrivateKey, ring: Keyring
) -> None:
    """Version 5: the gateway id stays home; the key's registration says whose batch it is."""
    named, unnamed = signed(key, body(name_gateway=True)), signed(key, body(gateway_id="gw-2"))
    assert verify(unnamed, ring).gateway_id == verify(named, ring).gateway_id == "gw-1"
    assert len(unnamed) <= len(named) - len("gw-1")


def test_a_key_cannot_be_registered_for_two_gateways(key: Ed25519PrivateKey, ring: Keyring) -> None:
    from kernel.errors import ConfigError

    with pytest.raises(ConfigError, match="already registered"):
        ring.add("gw-2", key.public_key())


def test_stray_bytes_after_the_message_are_malformed(key: Ed25519PrivateKey, ring: Keyring) -> None:
    with pytest.raises(MalformedBatch, match="stray"):
        verify(signed(key) + b"\x00", ring)


def test_other_algorithms_are_refused(key: Ed25519PrivateKey, ring: Keyring) -> None:
    kid = kid_for(key.public_key())
    protected = cbor2.dumps({1: -7, 4: kid})  # ES256
    blob = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, body(), b"\x00" * 64]))
    with pytest.raises(MalformedBatch, match="algorithm"):
        verify(blob, ring)


def _pycose_key(key: Ed25519PrivateKey, *, private: bool) -> OKPKey:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if not private:
        return OKPKey(crv=Ed25519, x=raw)
    d = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return OKPKey(crv=Ed25519, x=raw, d=d)


def test_pycose_verifies_our_compact_batches_given_the_algorithm(key: Ed25519PrivateKey) -> None:
    """The compact envelope names no algorithm: the verifier knows it from the registered key
    (RFC 9052 section 3.1), so pycose is told EdDSA in a local unprotected header (never sent)."""
    protected, unprotected, payload, signature = cbor2.loads(signed(key))
    message = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
    message.uhdr_update({Algorithm: EdDSA})
    message.key = _pycose_key(key, private=False)
    assert message.verify_signature()
    assert message.phdr[KID] == kid_for(key.public_key())[:4]
    assert message.payload == body()
    tampered = Sign1Message.from_cose_obj(
        [protected, {Algorithm: EdDSA}, payload[:-1] + b"\x00", signature], True
    )
    tampered.key = message.key
    assert not tampered.verify_signature()


def test_pycose_verifies_our_tagged_batches(key: Ed25519PrivateKey) -> None:
    tag = cbor2.loads(sign(body(), key, kid_for(key.public_key()), Envelope.TAGGED))
    # pycose 1.1 expects cbor2 < 6, which decoded a tag's array as a list (now a tuple)
    protected, unprotected, payload, signature = tag.value
    message = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
    message.key = _pycose_key(key, private=False)
    assert message.verify_signature()
    assert message.phdr[KID] == kid_for(key.public_key())
    assert message.payload == body()


def test_we_verify_pycose_signed_compact_batches(key: Ed25519PrivateKey, ring: Keyring) -> None:
    hint = kid_for(key.public_key())[:4]
    message = Sign1Message(phdr={KID: hint}, uhdr={Algorithm: EdDSA}, payload=body())
    message.key = _pycose_key(key, private=True)
    protected, _, payload, signature = cbor2.loads(message.encode(tag=False))
    blob = cbor2.dumps([protected, {}, payload, signature])  # the algorithm stays home
    assert blob == signed(key)  # deterministic Ed25519 and the same canonical header encoding
    assert verify(blob, ring).seq == 1


def test_we_verify_pycose_signed_tagged_batches(key: Ed25519PrivateKey, ring: Keyring) -> None:
    message = Sign1Message(phdr={Algorithm: EdDSA, KID: kid_for(key.public_key())}, payload=body())
    message.key = _pycose_key(key, private=True)
    blob = message.encode()
    assert blob == sign(body(), key, kid_for(key.public_key()), Envelope.TAGGED)
    assert verify(blob, ring).seq == 1
