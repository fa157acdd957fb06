"""The envelope: COSE_Sign1 (RFC 9052) with Ed25519 and the key id in the protected header.

Two spellings, one per signed content (docs/wire-format.md 1): the compact envelope the writer uses
since 2026-12 (UNTAGGED, protected header {4: <4-byte kid hint>}, the algorithm implied by the
registered Ed25519 key) and the tagged one written before (tag 18, protected header
{1: -8, 4: <8-byte kid>}), which batches sealed before an upgrade still carry. A message is tagged
if and only if its protected header is the tagged one's: the tag is outside the signature, so
allowing both with either header would give one signed content two envelopes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.wire.trusted_keys import KID_HINT_LENGTH, KID_LENGTH
from kernel.errors import BadSignature, MalformedBatch

#: CBOR tag of a COSE_Sign1 message (RFC 9052 section 2): only the tagged envelope carries it
COSE_SIGN1_TAG = 18
#: COSE header labels and the EdDSA algorithm id (RFC 9052 section 3.1, RFC 9053 section 2.2)
HEADER_ALG = 1
HEADER_KID = 4
ALG_EDDSA = -8
SIGNATURE_LENGTH = 64
#: the media type of a signed batch over HTTP (application/cose with its cose-type parameter, RFC 9052
#: section 2): it says "COSE_Sign1", which is what lets the compact envelope leave the tag out
MEDIA_TYPE = 'application/cose; cose-type="cose-sign1"'


class Envelope(Enum):
    """The two envelopes a reader takes (docs/wire-format.md 1)."""

    #: untagged, protected {4: <4-byte kid hint>}: what `sign` writes (78 bytes around the payload
    #: of a small batch where the tagged one takes 85)
    COMPACT = "compact"
    #: tag 18, protected {1: -8, 4: <8-byte kid>}: what the writer used before 2026-12
    TAGGED = "tagged"


@dataclass(frozen=True)
class SignedMessage:
    """A parsed but not yet verified COSE_Sign1 message; `kid` is the kid as received (the 8-byte
    kid of a tagged envelope, the 4-byte hint of a compact one)."""

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


def protected_header(kid: bytes, envelope: Envelope = Envelope.COMPACT) -> bytes:
    """The protected header's bytes for the 8-byte `kid` in `envelope`'s form."""
    if len(kid) != KID_LENGTH:
        raise ValueError(f"a kid has {KID_LENGTH} bytes, got {len(kid)}")
    if envelope is Envelope.COMPACT:
        return cbor2.dumps({HEADER_KID: bytes(kid[:KID_HINT_LENGTH])})
    return cbor2.dumps({HEADER_ALG: ALG_EDDSA, HEADER_KID: bytes(kid)})


def sign(
    body: bytes, private_key: Ed25519PrivateKey, kid: bytes, envelope: Envelope = Envelope.COMPACT
) -> bytes:
    """Wrap `body` as the payload of a COSE_Sign1 signed by `private_key`, whose 8-byte key id is
    `kid`: the compact envelope, or the tagged one of earlier writers when asked (tests, tools)."""
    protected = protected_header(kid, envelope)
    signature = private_key.sign(_to_be_signed(protected, body))
    parts = [protected, {}, bytes(body), signature]
    if envelope is Envelope.COMPACT:
        return cbor2.dumps(parts)
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, parts))


def parse_sign1(blob: bytes) -> SignedMessage:
    """Split a COSE_Sign1 in either envelope into its parts; MalformedBatch when it is not one of ours."""
    message = _decode_exactly(blob, "COSE_Sign1")
    tagged = isinstance(message, cbor2.CBORTag)
    if tagged:
        if message.tag != COSE_SIGN1_TAG:
            raise MalformedBatch(f"CBOR tag {message.tag}: a COSE_Sign1 batch is untagged or tagged 18")
        message = message.value
    if not isinstance(message, list | tuple) or len(message) != 4:  # cbor2 gives a tuple inside a tag
        raise MalformedBatch("COSE_Sign1 must be an array of 4 elements")
    protected, unprotected, payload, signature = message
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping):
        raise MalformedBatch("COSE_Sign1 headers must be a byte string and a map")
    if not isinstance(payload, bytes):
        raise MalformedBatch("COSE_Sign1 payload must be an attached byte string")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LENGTH:
        raise MalformedBatch("COSE_Sign1 signature must be a 64-byte Ed25519 signature")
    kid = _tagged_kid(protected) if tagged else _compact_kid(protected)
    return SignedMessage(protected, kid, payload, signature)


def _tagged_kid(protected: bytes) -> bytes:
    """The kid of the tagged envelope's header, which must be exactly {1: -8, 4: <8-byte kid>}."""
    header = _header(protected)
    if HEADER_ALG not in header:
        raise MalformedBatch(
            "a tagged COSE_Sign1 names its algorithm, EdDSA (-8): the compact header"
            " {4: <4-byte kid>} travels untagged"
        )
    if header.get(HEADER_ALG) != ALG_EDDSA:
        raise MalformedBatch(f"unsupported COSE algorithm {header.get(HEADER_ALG)!r}, expected EdDSA (-8)")
    kid = header.get(HEADER_KID)
    if not isinstance(kid, bytes) or len(kid) != KID_LENGTH or len(header) != 2:
        raise MalformedBatch(
            "a tagged COSE_Sign1 must carry the protected header {1: -8, 4: <8-byte kid>}"
            " (the compact header {4: <4-byte kid>} travels untagged)"
        )
    return kid


def _compact_kid(protected: bytes) -> bytes:
    """The kid hint of the compact envelope's header, which must be exactly {4: <4-byte kid>}."""
    header = _header(protected)
    if HEADER_ALG in header:
        raise MalformedBatch(
            "an untagged COSE_Sign1 carries no alg (EdDSA is implied by the key): the header"
            " {1: -8, 4: <8-byte kid>} travels only under tag 18"
        )
    kid = header.get(HEADER_KID)
    if not isinstance(kid, bytes) or len(kid) != KID_HINT_LENGTH or len(header) != 1:
        raise MalformedBatch("an untagged COSE_Sign1 must carry the protected header {4: <4-byte kid>}")
    return kid


def _header(protected: bytes) -> dict[Any, Any]:
    header = _decode_exactly(protected, "protected header")
    if not isinstance(header, dict):
        raise MalformedBatch("protected header must be a CBOR map")
    return header


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
