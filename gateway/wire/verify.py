"""What a backend calls: check the envelope, the signature and the signer, then decode the body."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.wire.batch import Batch
from gateway.wire.body import DecodedBody, decode_body
from gateway.wire.catalogue import CatalogueLookup
from gateway.wire.cose import SignedMessage, parse_sign1
from gateway.wire.rollover import check_rollover
from gateway.wire.trusted_keys import Keyring, kid_for
from kernel.errors import BadSignature, UnknownKey


def verify_and_decode(blob: bytes, keyring: Keyring, catalogues: CatalogueLookup | None = None) -> Batch:
    """A verified batch; raises only BadSignature, UnknownKey, UnsupportedVersion, MalformedBatch or
    UnknownCatalogue (a version-4 batch that refers to a catalogue `catalogues` does not hold).

    A body naming another gateway than the one its key is registered for raises BadSignature:
    a gateway must not speak for another.
    """
    message = parse_sign1(bytes(blob))
    trusted = keyring.trusted(message.kid)
    return verify_message(message, trusted.public_key, trusted.gateway_id, catalogues)


def verify_message(
    message: SignedMessage,
    public_key: Ed25519PublicKey,
    gateway_id: str,
    catalogues: CatalogueLookup | None = None,
) -> Batch:
    """Steps 3-5 of verification for an envelope already parsed and a key already looked up (the
    receiver parses the canonical envelope itself and keeps its key registry in its database).

    `catalogues` are the series catalogues of `gateway_id` the caller holds; the signature is
    checked before any of them is looked up."""
    message.verify(public_key)
    body = decode_body(message.payload, catalogues)
    check_signer(body, message, gateway_id)
    return batch_of(body, message)


def check_signer(body: DecodedBody, message: SignedMessage, gateway_id: str) -> None:
    """BadSignature unless the body names the gateway its signer's key belongs to."""
    if body.gateway_id != gateway_id:
        raise BadSignature(
            f"batch claims gateway {body.gateway_id!r} but key {message.kid.hex()}"
            f" belongs to gateway {gateway_id!r}"
        )


def verify_with_key(
    blob: bytes, public_key: Ed25519PublicKey, catalogues: CatalogueLookup | None = None
) -> Batch:
    """A batch verified with one public key, whatever gateway it names (for tools, not receivers)."""
    message = parse_sign1(bytes(blob))
    if message.kid != kid_for(public_key):
        raise UnknownKey(f"batch is signed with key {message.kid.hex()}, not {kid_for(public_key).hex()}")
    message.verify(public_key)
    return batch_of(decode_body(message.payload, catalogues), message)


def batch_of(body: DecodedBody, message: SignedMessage) -> Batch:
    """The Batch of a decoded body and its verified envelope (the rollover statement checked)."""
    kid = message.kid
    rollover = None if body.rollover is None else check_rollover(body.rollover, body.gateway_id, kid)
    return Batch(
        version=body.version,
        gateway_id=body.gateway_id,
        seq=body.seq,
        created_ms=body.created_ms,
        kid=kid,
        series=body.series,
        readings=body.readings,
        windows=body.windows,
        gaps=body.gaps,
        events=body.events,
        epoch=body.epoch,
        rollover=rollover,
        digest=message.content_digest,
        catalogue=body.catalogue,
        catalogue_table=body.catalogue_table,
    )
