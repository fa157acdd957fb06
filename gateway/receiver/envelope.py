"""The canonical envelope, checked byte by byte before any generic CBOR decoding (docs/wire-format.md 1).

A receiver accepts exactly the envelope `gateway.wire.sign` writes: tag 18, an array of 4, the
protected header {1: -8, 4: <8-byte kid>} in that order, an EMPTY unprotected map, the payload as a
definite-length byte string in the shortest head, a 64-byte signature, nothing after. Why so strict:
- cost: a 16 MB body of tag 18 over 16 M empty maps took cbor2 2.4 GB and 12 s of CPU to decode;
  these checks refuse it after reading 2 bytes.
- identity: anything the signature does not cover (the unprotected map, the choice of CBOR heads)
  could otherwise differ between copies of one signed batch; only one spelling is accepted.
"""

from __future__ import annotations

from gateway.wire.cose import SignedMessage
from kernel.errors import MalformedBatch

#: tag 18 (COSE_Sign1) and an array of 4 elements, in their one-byte CBOR heads
_TAG_AND_ARRAY = b"\xd2\x84"
#: the protected header: bstr(13) holding map(2) {1: -8, 4: bstr(8)}
_PROTECTED_PREFIX = b"\x4d\xa2\x01\x27\x04\x48"
KID_LENGTH = 8
_EMPTY_MAP = b"\xa0"
_SIGNATURE_HEAD = b"\x58\x40"
SIGNATURE_LENGTH = 64
#: the largest envelope accepted (the body limit of gateway.wire.body plus the envelope's bytes)
MAX_ENVELOPE_BYTES = 64 * 1024 * 1024 + 64


def parse_canonical(blob: bytes) -> SignedMessage:
    """The parts of a canonical COSE_Sign1 batch envelope; MalformedBatch for anything else."""
    if len(blob) > MAX_ENVELOPE_BYTES:
        raise MalformedBatch(f"envelope of {len(blob)} bytes, more than {MAX_ENVELOPE_BYTES}")
    if blob[:2] != _TAG_AND_ARRAY:
        raise MalformedBatch("not a COSE_Sign1 batch: expected tag 18 over an array of 4")
    if blob[2:8] != _PROTECTED_PREFIX:
        raise MalformedBatch("protected header is not {1: -8, 4: <8-byte kid>} in canonical form")
    kid_end = 8 + KID_LENGTH
    protected = blob[3:kid_end]
    if blob[kid_end : kid_end + 1] != _EMPTY_MAP:
        raise MalformedBatch("the unprotected header must be an empty map")
    payload_start, payload_length = _byte_string_head(blob, kid_end + 1)
    payload_end = payload_start + payload_length
    if blob[payload_end : payload_end + 2] != _SIGNATURE_HEAD:
        raise MalformedBatch("signature must be a 64-byte byte string")
    signature = blob[payload_end + 2 :]
    if len(signature) != SIGNATURE_LENGTH:
        raise MalformedBatch(f"envelope must end with the 64-byte signature, got {len(signature)} bytes")
    kid = bytes(blob[8:kid_end])
    return SignedMessage(bytes(protected), kid, bytes(blob[payload_start:payload_end]), bytes(signature))


def _byte_string_head(blob: bytes, at: int) -> tuple[int, int]:
    """(start, length) of the definite-length byte string whose head is at `at`, in its shortest head."""
    if at >= len(blob):
        raise MalformedBatch("envelope ends before the payload")
    initial = blob[at]
    if initial >> 5 != 2:
        raise MalformedBatch("payload must be an attached byte string")
    info = initial & 0x1F
    if info < 24:
        return at + 1, info
    width = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if width is None:
        raise MalformedBatch("payload must be a definite-length byte string")
    length = int.from_bytes(blob[at + 1 : at + 1 + width], "big")
    shortest_floor = 24 if width == 1 else 1 << (4 * width)  # below it a shorter head would do
    if length < shortest_floor:
        raise MalformedBatch("payload length is not in its shortest CBOR head")
    if at + 1 + width + length > len(blob):
        raise MalformedBatch("payload is longer than the envelope")
    return at + 1 + width, length
