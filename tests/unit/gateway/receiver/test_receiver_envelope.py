"""The canonical envelopes: exactly what `wire.sign` writes (compact) or wrote (tagged), refused cheaply otherwise."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.receiver.envelope import parse_canonical
from gateway.wire import Envelope, sign
from gateway.wire.cose import parse_sign1
from hil.fleet import SimulatedGateway
from kernel.errors import MalformedBatch

GATEWAY = SimulatedGateway("gw-1")
BODY = GATEWAY.body(0, 5)
GENUINE = sign(BODY, GATEWAY.key, GATEWAY.kid)
TAGGED = sign(BODY, GATEWAY.key, GATEWAY.kid, Envelope.TAGGED)


@pytest.mark.parametrize("blob", [GENUINE, TAGGED], ids=["compact", "tagged"])
def test_the_envelopes_sign_writes_parse_like_the_generic_parser(blob: bytes) -> None:
    assert parse_canonical(blob) == parse_sign1(blob)


def test_the_compact_envelope_carries_the_kid_hint_and_is_seven_bytes_shorter() -> None:
    compact, tagged = parse_canonical(GENUINE), parse_canonical(TAGGED)
    assert (compact.kid, tagged.kid) == (GATEWAY.kid[:4], GATEWAY.kid)
    assert compact.payload == tagged.payload == BODY
    assert len(TAGGED) - len(GENUINE) == 7  # the tag (1) and the protected header's alg and 4 kid bytes
    assert len(GENUINE) - len(BODY) == 78  # with the payload's 2-byte head (85 for the tagged one)


def long_head(blob: bytes, prefix_length: int) -> bytes:
    """The same envelope with the payload's length in a needlessly long (4-byte) CBOR head."""
    message = parse_sign1(blob)
    length = len(message.payload).to_bytes(4, "big")
    return blob[:prefix_length] + b"\x5a" + length + message.payload + b"\x58\x40" + message.signature


def _parts(blob: bytes) -> list[object]:
    item = cbor2.loads(blob)
    return list(item.value if isinstance(item, cbor2.CBORTag) else item)


def tag(parts: list[object]) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(18, parts))


def _resigned(protected: bytes, *, tagged: bool) -> bytes:
    """A correctly signed message with this protected header: only the envelope's form is wrong."""
    from gateway.wire.cose import _to_be_signed

    parts = [protected, {}, BODY, GATEWAY.key.sign(_to_be_signed(protected, BODY))]
    return tag(parts) if tagged else cbor2.dumps(parts)


COMPACT_HEADER, TAGGED_HEADER = _parts(GENUINE)[0], _parts(TAGGED)[0]
assert isinstance(COMPACT_HEADER, bytes) and isinstance(TAGGED_HEADER, bytes)


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (tag([{} for _ in range(4)]), "protected header"),
        (b"\xd2\x9a\x01\x00\x00\x00" + b"\xa0" * 1000, "an array of 4, or tag 18"),
        (b"\x9a\x01\x00\x00\x00" + b"\xa0" * 1000, "an array of 4, or tag 18"),
        (GENUINE + b"\x00", "64-byte signature"),
        (GENUINE[:-1], "64-byte signature"),
        (TAGGED + b"\x00", "64-byte signature"),
        (long_head(GENUINE, 10), "shortest CBOR head"),
        (long_head(TAGGED, 17), "shortest CBOR head"),
        (cbor2.dumps([_parts(GENUINE)[0], {4: b"x"}, *_parts(GENUINE)[2:]]), "empty map"),
        (tag([_parts(TAGGED)[0], {4: b"x"}, *_parts(TAGGED)[2:]]), "empty map"),
        # one spelling per signed content: the tag goes with the tagged header only
        (tag(_parts(GENUINE)), "must not be tagged"),
        (cbor2.dumps(_parts(TAGGED)), "only under tag 18"),
        # the compact header is {4: <4 bytes>}: no 8-byte kid, no alg
        (_resigned(cbor2.dumps({4: GATEWAY.kid}), tagged=False), r"\{4: <4-byte kid>\}"),
        (_resigned(cbor2.dumps({1: -8, 4: GATEWAY.kid[:4]}), tagged=False), r"\{4: <4-byte kid>\}"),
        (_resigned(cbor2.dumps({4: GATEWAY.kid[:4]}), tagged=True), "must not be tagged"),
    ],
)
def test_anything_but_a_canonical_envelope_is_malformed(blob: bytes, why: str) -> None:
    with pytest.raises(MalformedBatch, match=why):
        parse_canonical(blob)


@pytest.mark.parametrize(
    ("protected", "tagged", "why"),
    [
        (COMPACT_HEADER, True, "untagged"),
        (TAGGED_HEADER, False, "only under tag 18"),
        (cbor2.dumps({4: GATEWAY.kid}), False, r"\{4: <4-byte kid>\}"),
        (cbor2.dumps({1: -8, 4: GATEWAY.kid[:4]}), False, "carries no alg"),
        (cbor2.dumps({4: GATEWAY.kid[:4]}), True, "travels untagged"),
        (cbor2.dumps({1: -8, 4: GATEWAY.kid[:4]}), True, "8-byte kid"),
        (cbor2.dumps({4: GATEWAY.kid[:4], 5: b""}), False, r"\{4: <4-byte kid>\}"),
    ],
)
def test_the_generic_parser_keeps_the_same_one_spelling_rule(
    protected: bytes, tagged: bool, why: str
) -> None:
    with pytest.raises(MalformedBatch, match=why):
        parse_sign1(_resigned(protected, tagged=tagged))


@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_parse_or_raise_malformed_only(blob: bytes, tagged: bool) -> None:
    genuine = TAGGED if tagged else GENUINE
    with contextlib.suppress(MalformedBatch):
        parse_canonical(genuine[: len(blob) % len(genuine)] + blob)
