"""The canonical envelopes, checked byte by byte before any generic CBOR decoding (docs/wire-format.md 1).

A receiver accepts exactly the two envelopes readers take, one spelling each:
- compact (what `gateway.wire.sign` writes): UNTAGGED, an array of 4, the protected header
  {4: <4-byte kid hint>};
- tagged (what writers before 2026-12 sealed into outboxes): tag 18, an array of 4, the protected
  header {1: -8, 4: <8-byte kid>} in that order;
then in both an EMPTY unprotected map, the payload as a definite-length byte string in the shortest
head, a 64-byte signature, nothing after. Why so strict:
- cost: a 16 MB body of tag 18 over 16 M empty maps took cbor2 2.4 GB and 12 s of CPU to decode;
  these checks refuse it after reading 2 bytes.
- identity: anything the signature does not cover (the tag, the unprotected map, the choice of CBOR
  heads) could otherwise differ between copies of one signed batch; only one spelling is accepted,
  so the tag goes with the tagged header and never with the compact one.
"""

from __future__ import annotations

from gateway.wire.cose import SignedMessage
from gateway.wire.trusted_keys import KID_HINT_LENGTH, KID_LENGTH
from kernel.errors import MalformedBatch

#: an array of 4 elements, then the compact protected header: bstr(7) holding map(1) {4: bstr(4)}
_COMPACT_START = b"\x84"
_COMPACT_PROTECTED = b"\x47\xa1\x04\x44"
#: tag 18 (COSE_Sign1) and an array of 4, then the tagged protected header: bstr(13) holding
#: map(2) {1: -8, 4: bstr(8)}
_TAGGED_START = b"\xd2\x84"
_TAGGED_PROTECTED = b"\x4d\xa2\x01\x27\x04\x48"
_EMPTY_MAP = b"\xa0"
_SIGNATURE_HEAD = b"\x58\x40"
SIGNATURE_LENGTH = 64
#: the largest envelope accepted (the body limit of gateway.wire.body plus the envelope's bytes)
MAX_ENVELOPE_BYTES = 64 * 1024 * 1024 + 64


def parse_canonical(blob: bytes) -> SignedMessage:
    """The parts of a canonical COSE_Sign1 batch envelope, compact or tagged; MalformedBatch for
    anything else."""
    if len(blob) > MAX_ENVELOPE_BYTES:
        raise MalformedBatch(f"envelope of {len(blob)} bytes, more than {MAX_ENVELOPE_BYTES}")
    if blob[:1] == _COMPACT_START:
        if blob[1:7] == _TAGGED_PROTECTED:
            raise MalformedBatch("the protected header {1: -8, 4: <8-byte kid>} travels only under tag 18")
        if blob[1:5] != _COMPACT_PROTECTED:
            raise MalformedBatch("an untagged envelope's protected header must be {4: <4-byte kid>}")
        protected_at, kid_at, kid_length = 2, 5, KID_HINT_LENGTH
    elif blob[:2] == _TAGGED_START:
        if blob[2:6] == _COMPACT_PROTECTED:
            raise MalformedBatch("the compact protected header {4: <4-byte kid>} must not be tagged")
        if blob[2:8] != _TAGGED_PROTECTED:
            raise MalformedBatch("protected header is not {1: -8, 4: <8-byte kid>} in canonical form")
        protected_at, kid_at, kid_length = 3, 8, KID_LENGTH
    else:
        raise MalformedBatch("not a COSE_Sign1 batch: expected an array of 4, or tag 18 over one")
    return _after_header(blob, protected_at, kid_at, kid_at + kid_length)


def _after_header(blob: bytes, protected_at: int, kid_at: int, kid_end: int) -> SignedMessage:
    """The message whose protected header's bytes run from `protected_at` to the kid's end."""
    if blob[kid_end : kid_end + 1] != _EMPTY_MAP:
        raise MalformedBatch("the unprotected header must be an empty map")
    payload_start, payload_length = _byte_string_head(blob, kid_end + 1)
    payload_end = payload_start + payload_length
    if blob[payload_end : payload_end + 2] != _SIGNATURE_HEAD:
        raise MalformedBatch("signature must be a 64-byte byte string")
    signature = blob[payload_end + 2 :]
    if len(signature) != SIGNATURE_LENGTH:
        raise MalformedBatch(f"envelope must end with the 64-byte signature, got {len(signature)} bytes")
    return SignedMessage(
        bytes(blob[protected_at:kid_end]),
        bytes(blob[kid_at:kid_end]),
        bytes(blob[payload_start:payload_end]),
        bytes(signature),
    )


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
