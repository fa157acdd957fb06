"""What a backend calls: check the envelope, the signature and the signer, then decode the body."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.wire.batch import Batch
from gateway.wire.body import DecodedBody, decode_body
from gateway.wire.catalogue import CatalogueLookup
from gateway.wire.cose import SignedMessage, parse_sign1
from gateway.wire.rollover import check_rollover
from gateway.wire.trusted_keys import Keyring, kid_for, names_key
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
    return batch_of(body, message, kid_for(public_key))


def check_signer(body: DecodedBody, message: SignedMessage, gateway_id: str) -> None:
    """BadSignature unless the body names the gateway its signer's key belongs to; a version-5 body
    that names none takes that gateway (the key implies it)."""
    if body.gateway_id is None:
        body.gateway_id = gateway_id
    elif body.gateway_id != gateway_id:
        raise BadSignature(
            f"batch claims gateway {body.gateway_id!r} but key {message.kid.hex()}"
            f" belongs to gateway {gateway_id!r}"
        )


#: the gateway of a batch verified with a bare key whose body does not name one (version 5), when
#: the caller does not say whose key it is either
UNKNOWN_GATEWAY = ""


def verify_with_key(
    blob: bytes,
    public_key: Ed25519PublicKey,
    catalogues: CatalogueLookup | None = None,
    gateway_id: str | None = None,
) -> Batch:
    """A batch verified with one public key (for tools, not receivers).

    `gateway_id` is the gateway the key belongs to when the caller knows it: it is checked against a
    body that names one (BadSignature when they differ) and given to one that does not. Without it
    a body's own claim is taken as it is, and a version-5 body that names none has UNKNOWN_GATEWAY;
    a key rollover in such a batch cannot be checked (its proof binds the gateway): BadSignature."""
    message = parse_sign1(bytes(blob))
    kid = kid_for(public_key)
    if not names_key(message.kid, kid):
        raise UnknownKey(f"batch is signed with key {message.kid.hex()}, not {kid.hex()}")
    message.verify(public_key)
    body = decode_body(message.payload, catalogues)
    if gateway_id is not None:
        check_signer(body, message, gateway_id)
    return batch_of(body, message, kid)


def batch_of(body: DecodedBody, message: SignedMessage, kid: bytes) -> Batch:
    """The Batch of a decoded body and its envelope verified with the key whose 8-byte kid is `kid`
    (the rollover statement checked: its proof names that full kid, whichever envelope carried it)."""
    gateway_id = UNKNOWN_GATEWAY if body.gateway_id is None else body.gateway_id
    rollover = None
    if body.rollover is not None:
        if body.gateway_id is None:
            raise BadSignature(
                "the key rollover's proof names the gateway, which this batch leaves to its key:"
                " verify it with the gateway id of the key"
            )
        rollover = check_rollover(body.rollover, body.gateway_id, kid)
    return Batch(
        version=body.version,
        gateway_id=gateway_id,
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
