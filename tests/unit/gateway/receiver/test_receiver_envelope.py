"""The canonical envelope check: exactly what `wire.sign` writes, refused cheaply otherwise."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.receiver.envelope import parse_canonical
from gateway.wire.cose import parse_sign1
from hil.fleet import SimulatedGateway
from kernel.errors import MalformedBatch

GENUINE = SimulatedGateway("gw-1").batch()


def test_the_envelope_sign_writes_parses_like_the_generic_parser() -> None:
    assert parse_canonical(GENUINE) == parse_sign1(GENUINE)


def long_head(blob: bytes) -> bytes:
    """The same envelope with the payload's length in a needlessly long (4-byte) CBOR head."""
    message = parse_sign1(blob)
    prefix = blob[:17]  # tag, array head, protected header (14 bytes), empty unprotected map
    length = len(message.payload).to_bytes(4, "big")
    return prefix + b"\x5a" + length + message.payload + b"\x58\x40" + message.signature


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (cbor2.dumps(cbor2.CBORTag(18, [{} for _ in range(4)])), "protected header"),
        (b"\xd2\x9a\x01\x00\x00\x00" + b"\xa0" * 1000, "tag 18 over an array of 4"),
        (GENUINE + b"\x00", "64-byte signature"),
        (GENUINE[:-1], "64-byte signature"),
        (long_head(GENUINE), "shortest CBOR head"),
        (
            cbor2.dumps(
                cbor2.CBORTag(
                    18, [*cbor2.loads(GENUINE).value[:1], {4: b"x"}, *cbor2.loads(GENUINE).value[2:]]
                )
            ),
            "empty map",
        ),
    ],
)
def test_anything_but_the_canonical_envelope_is_malformed(blob: bytes, why: str) -> None:
    with pytest.raises(MalformedBatch, match=why):
        parse_canonical(blob)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_malformed_only(blob: bytes) -> None:
    with contextlib.suppress(MalformedBatch):
        parse_canonical(GENUINE[: len(blob) % len(GENUINE)] + blob)
