"""The item and depth bound a body meets before cbor2 builds its objects."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.wire.body import decode_body
from gateway.wire.cbor_limits import check_items
from gateway.wire.cose import parse_sign1
from hil.fleet import SimulatedGateway
from kernel.errors import MalformedBatch


def test_a_genuine_body_passes() -> None:
    payload = parse_sign1(SimulatedGateway("gw-1", series=20).batch(100)).payload
    body = decode_body(payload)
    assert (len(body.series), len(body.readings)) == (20, 100 * 20)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x9a\x01\x00\x00\x00" + b"\xa0" * 300_000, "more than 200000 CBOR items"),
        (b"\x81" * 40 + b"\x00", "nests deeper than 16"),
        (b"\x9f\x00\xff", "indefinite"),
        (b"\x5a\x00\x10\x00\x00ab", "truncated"),
        (b"\x82\x00", "truncated"),
    ],
)
def test_bodies_beyond_the_bounds_are_refused_before_decoding(data: bytes, why: str) -> None:
    with pytest.raises(MalformedBatch, match=why):
        check_items(data)


@given(
    st.recursive(
        st.integers() | st.binary() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_whatever_cbor2_writes_within_the_bounds_passes(item: object) -> None:
    data = cbor2.dumps(item)
    try:
        check_items(data)
    except MalformedBatch as exc:
        assert "deeper" in str(exc) or "items" in str(exc)
