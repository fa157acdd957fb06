"""Key rollover statements: a gateway announces its next key inside a batch signed by its current one."""

from __future__ import annotations

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.wire.batch import KeyRollover
from kernel.errors import BadSignature, MalformedBatch

#: domain separation for the proof, so it can never be mistaken for a batch signature
ROLLOVER_CONTEXT = "rostock-gateway key rollover v1"
PUBLIC_KEY_LENGTH = 32
PROOF_LENGTH = 64


def rollover_message(gateway_id: str, old_kid: bytes, new_public_key: bytes) -> bytes:
    """The bytes the new key signs: CBOR [context, gateway id, old kid, new public key]."""
    return cbor2.dumps([ROLLOVER_CONTEXT, gateway_id, bytes(old_kid), bytes(new_public_key)])


def make_rollover(gateway_id: str, old_kid: bytes, new_private_key: Ed25519PrivateKey) -> KeyRollover:
    """The statement a gateway puts into a batch signed by `old_kid` when it moves to `new_private_key`."""
    raw = new_private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    proof = new_private_key.sign(rollover_message(gateway_id, old_kid, raw))
    return KeyRollover(new_public_key=raw, proof=proof)


def check_rollover(item: object, gateway_id: str, old_kid: bytes) -> KeyRollover:
    """A decoded body field 10 checked: shape (MalformedBatch) and the new key's proof (BadSignature)."""
    if (
        not isinstance(item, list)
        or len(item) != 2
        or not all(isinstance(x, bytes) for x in item)
        or len(item[0]) != PUBLIC_KEY_LENGTH
        or len(item[1]) != PROOF_LENGTH
    ):
        raise MalformedBatch("a key rollover must be [32-byte public key, 64-byte proof]")
    new_public_key, proof = item
    try:
        key = Ed25519PublicKey.from_public_bytes(new_public_key)
        key.verify(proof, rollover_message(gateway_id, old_kid, new_public_key))
    except (InvalidSignature, ValueError):
        raise BadSignature("the key rollover's proof does not verify with the new key") from None
    return KeyRollover(new_public_key=new_public_key, proof=proof)
