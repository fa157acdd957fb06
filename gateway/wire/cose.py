"""The envelope: COSE_Sign1 (RFC 9052, tag 18) with EdDSA over Ed25519 and the kid in the protected header."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kernel.errors import BadSignature, MalformedBatch

#: CBOR tag of a COSE_Sign1 message (RFC 9052 section 2)
COSE_SIGN1_TAG = 18
#: COSE header labels and the EdDSA algorithm id (RFC 9052 section 3.1, RFC 9053 section 2.2)
HEADER_ALG = 1
HEADER_KID = 4
ALG_EDDSA = -8
SIGNATURE_LENGTH = 64
#: the media type of a signed batch over HTTP (application/cose with its cose-type parameter, RFC 9052 section 2)
MEDIA_TYPE = 'application/cose; cose-type="cose-sign1"'


@dataclass(frozen=True)
class SignedMessage:
    """A parsed but not yet verified COSE_Sign1 message."""

    protected: bytes
    kid: bytes
    payload: bytes
    signature: bytes

    @property
    def content_digest(self) -> bytes:
        """SHA-256 over the signed bytes (the Sig_structure): the same for every envelope of this content."""
        return hashlib.sha256(_to_be_signed(self.protected, self.payload)).digest()

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Check the signature over the Sig_structure; BadSignature when it does not hold."""
        try:
            public_key.verify(self.signature, _to_be_signed(self.protected, self.payload))
        except InvalidSignature:
            raise BadSignature(f"signature does not verify with key {self.kid.hex()}") from None


def sign(body: bytes, private_key: Ed25519PrivateKey, kid: bytes) -> bytes:
    """Wrap `body` as the payload of a tagged COSE_Sign1 signed by `private_key` under `kid`."""
    protected = cbor2.dumps({HEADER_ALG: ALG_EDDSA, HEADER_KID: bytes(kid)})
    signature = private_key.sign(_to_be_signed(protected, body))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, bytes(body), signature]))


def parse_sign1(blob: bytes) -> SignedMessage:
    """Split a tagged COSE_Sign1 into its parts; MalformedBatch when it is not one of ours."""
    message = _decode_exactly(blob, "COSE_Sign1")
    if not isinstance(message, cbor2.CBORTag) or message.tag != COSE_SIGN1_TAG:
        raise MalformedBatch("not a tagged COSE_Sign1 message (CBOR tag 18)")
    parts = message.value
    if not isinstance(parts, list | tuple) or len(parts) != 4:  # cbor2 gives a tuple inside a tag
        raise MalformedBatch("COSE_Sign1 must be an array of 4 elements")
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping):
        raise MalformedBatch("COSE_Sign1 headers must be a byte string and a map")
    if not isinstance(payload, bytes):
        raise MalformedBatch("COSE_Sign1 payload must be an attached byte string")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LENGTH:
        raise MalformedBatch("COSE_Sign1 signature must be a 64-byte Ed25519 signature")
    return SignedMessage(protected, _kid_of(protected), payload, signature)


def _kid_of(protected: bytes) -> bytes:
    header = _decode_exactly(protected, "protected header")
    if not isinstance(header, dict):
        raise MalformedBatch("protected header must be a CBOR map")
    if header.get(HEADER_ALG) != ALG_EDDSA:
        raise MalformedBatch(f"unsupported COSE algorithm {header.get(HEADER_ALG)!r}, expected EdDSA (-8)")
    kid = header.get(HEADER_KID)
    if not isinstance(kid, bytes):
        raise MalformedBatch("protected header carries no kid")
    return kid


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    # Sig_structure of RFC 9052 section 4.4 with an empty external_aad
    return cbor2.dumps(["Signature1", protected, b"", payload])


def _decode_exactly(data: bytes, what: str) -> Any:
    """One CBOR item filling `data` exactly; cbor2's exceptions become MalformedBatch."""
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several kinds on hostile input
        raise MalformedBatch(f"{what} is not valid CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise MalformedBatch(f"{what} is followed by {len(data) - stream.tell()} stray bytes")
    return item
