"""Hostile input: truncated, bit-flipped, random and signed-but-garbled batches raise only wire errors."""

from __future__ import annotations

import contextlib
import math

import cbor2
import numpy as np
import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.wire import (
    Batch,
    Envelope,
    Keyring,
    ReadingColumns,
    SeriesInfo,
    WindowColumns,
    encode_batch,
    kid_for,
    mixing,
    sign,
    verify_and_decode,
)
from gateway.wire.body import body_cbor
from gateway.wire.cose import parse_sign1
from gateway.wire.group import verify_group
from kernel.errors import BadSignature, MalformedBatch, UnknownCatalogue, UnknownKey, UnsupportedVersion

#: the five errors docs/wire-format.md section 6 names (UnknownCatalogue since version 4)
WIRE_ERRORS = (BadSignature, UnknownKey, UnsupportedVersion, MalformedBatch, UnknownCatalogue)
KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
KID = kid_for(KEY.public_key())
RING = Keyring()
RING.add("gw-fuzz", KEY.public_key())
T0 = 1_764_150_000_000
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sample_body() -> bytes:
    rng = np.random.default_rng(11)
    n = 400
    series = rng.integers(0, 4, n)
    pressure = 88.5 + np.round(rng.integers(-30, 30, n) * (50 / 3)) / 1e5
    values = np.where(series == 3, pressure, np.round(rng.normal(10, 3, n), 2))
    values[::37] = np.nan
    n_windows = 5
    start = T0 + 60_000 * np.arange(n_windows)
    return encode_batch(
        gateway_id="gw-fuzz",
        seq=3,
        created_ms=T0,
        series=[
            SeriesInfo("a", "t", "Cel", 0.01, 1000),
            SeriesInfo("b", "t", "Cel", None),
            SeriesInfo("c", "pm10", "ug/m3", 0.5),
            SeriesInfo("d", "p", "kPa", 1e-5, 1000),
        ],
        readings=ReadingColumns(
            series=series,
            ts_ms=T0 + np.cumsum(rng.integers(0, 120_000, n)),
            value=values,
            quality=(rng.random(n) < 0.05).astype(np.uint16) * 4,
        ),
        windows=WindowColumns(
            series=np.arange(n_windows) % 4,
            window_start=start,
            window_ms=np.full(n_windows, 60_000),
            rev=np.zeros(n_windows),
            count=np.full(n_windows, 60),
            nan_count=np.zeros(n_windows),
            min=rng.normal(size=n_windows),
            max=rng.normal(size=n_windows),
            mean=rng.normal(size=n_windows),
            std=rng.normal(size=n_windows),
            first=rng.normal(size=n_windows),
            last=rng.normal(size=n_windows),
            first_ts=start,
            last_ts=start + 59_000,
        ),
    )


BODY = _sample_body()
#: the compact envelope `sign` writes, and the tagged one batches sealed before 2026-12 carry
BLOB = sign(BODY, KEY, KID)
TAGGED_BLOB = sign(BODY, KEY, KID, Envelope.TAGGED)
CBOR_BODY = body_cbor(BODY)


def _context_mixed_body() -> bytes:
    """Ten days of an hourly series whose steps travel as method 8 (version 6, count implied)."""
    rng = np.random.default_rng(8)
    value = np.round(np.sin(np.arange(240) * np.pi / 12) * 5 + np.cumsum(rng.normal(0, 0.2, 240)), 1)
    ts = T0 + 3_600_000 * np.arange(240)
    table = [SeriesInfo("h", "t", "Cel", 0.1, 1000)]
    columns = ReadingColumns(np.zeros(240, np.int32), ts, value, np.zeros(240, np.uint16))
    body = cbor2.loads(body_cbor(encode_batch(gateway_id="gw-fuzz", seq=4, created_ms=T0, series=table,
                                              readings=columns)))  # fmt: skip
    column = mixing.pack(np.diff(np.round(value * 10).astype(np.int64)), 24, mixing.STEPS, 0)
    body[5][3] = column[:1] + column[3:]  # the count, 239 (2 bytes), is implied
    body[5].pop(10, None)
    return cbor2.dumps(body)


MIXED_BODY = _context_mixed_body()


def only_wire_errors(blob: bytes) -> None:
    with contextlib.suppress(*WIRE_ERRORS):
        verify_and_decode(blob, RING)


def signed_payload(payload: bytes) -> bytes:
    return sign(payload, KEY, KID)


def test_the_sample_batch_itself_decodes() -> None:
    batch = verify_and_decode(BLOB, RING)
    assert len(batch.readings) == 400
    assert int(np.isnan(batch.readings.value).sum()) == math.ceil(400 / 37)
    assert len(batch.windows) == 5


def test_the_sample_batch_decodes_alike_in_both_envelopes() -> None:
    compact, tagged = verify_and_decode(BLOB, RING), verify_and_decode(TAGGED_BLOB, RING)
    assert compact.kid == tagged.kid == KID
    assert compact.readings.ts_ms.tolist() == tagged.readings.ts_ms.tolist()
    assert len(TAGGED_BLOB) - len(BLOB) == 7


@FUZZ
@given(st.integers(min_value=0, max_value=len(TAGGED_BLOB) - 1), st.booleans())
def test_truncated_batches(cut: int, tagged: bool) -> None:
    only_wire_errors((TAGGED_BLOB if tagged else BLOB)[:cut])


@FUZZ
@given(st.lists(st.integers(min_value=0, max_value=8 * len(BLOB) - 1), min_size=1, max_size=4), st.booleans())
def test_bit_flipped_batches(bits: list[int], tagged: bool) -> None:
    data = bytearray(TAGGED_BLOB if tagged else BLOB)
    for bit in bits:
        data[bit // 8] ^= 1 << (bit % 8)
    only_wire_errors(bytes(data))


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    only_wire_errors(data)
    only_wire_errors(b"\xd2\x84" + data)  # looks like a tagged COSE_Sign1 for two bytes
    only_wire_errors(b"\x84\x47\xa1\x04\x44" + KID[:4] + data)  # a compact one naming our key for nine
    only_wire_errors(b"\x84" + data)


@FUZZ
@given(st.binary(max_size=12), st.booleans(), st.binary(max_size=200))
def test_signed_payloads_under_any_protected_header(protected: bytes, tagged: bool, payload: bytes) -> None:
    """Well-formed COSE_Sign1 arrays with any protected bytes (our kid hint, other kids, no map at
    all), tagged or not: only wire errors, whatever the header says."""
    parts = [protected, {}, payload, bytes(64)]
    only_wire_errors(cbor2.dumps(cbor2.CBORTag(18, parts) if tagged else parts))
    header = cbor2.dumps({4: KID[:4]} if not tagged else {1: -8, 4: KID})
    only_wire_errors(cbor2.dumps([header + protected, {}, payload, bytes(64)]))


@FUZZ
@given(st.binary(max_size=600))
def test_signed_random_payloads(payload: bytes) -> None:
    only_wire_errors(signed_payload(payload))
    only_wire_errors(signed_payload(zstandard.ZstdCompressor().compress(payload)))
    only_wire_errors(signed_payload(b"\xa6" + payload))  # a plain body's map head, then anything


@FUZZ
@given(st.lists(st.integers(min_value=0, max_value=8 * len(CBOR_BODY) - 1), min_size=1, max_size=6))
def test_signed_bodies_with_flipped_bits(bits: list[int]) -> None:
    data = bytearray(CBOR_BODY)
    for bit in bits:
        data[bit // 8] ^= 1 << (bit % 8)
    only_wire_errors(signed_payload(zstandard.ZstdCompressor().compress(bytes(data))))
    only_wire_errors(signed_payload(bytes(data)))  # as a plain body (version 5)


@FUZZ
@given(st.integers(min_value=1, max_value=len(CBOR_BODY) - 1), st.binary(max_size=8))
def test_signed_bodies_with_spliced_bytes(at: int, insert: bytes) -> None:
    data = CBOR_BODY[:at] + insert + CBOR_BODY[at + len(insert) // 2 :]
    only_wire_errors(signed_payload(zstandard.ZstdCompressor().compress(data)))


CBOR_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.binary(max_size=40)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.integers(0, 9), inner, max_size=6),
    max_leaves=30,
)


@FUZZ
@given(st.dictionaries(st.integers(0, 9), CBOR_VALUES, max_size=10), st.sampled_from([1, 2, 3, 4, 5, 6]))
def test_signed_bodies_of_random_structure(fields: dict[int, object], version: int) -> None:
    body = {**fields, 0: version, 1: "gw-fuzz"} if version < 5 else {**fields, 0: version}
    only_wire_errors(signed_payload(zstandard.ZstdCompressor().compress(cbor2.dumps(body))))
    only_wire_errors(signed_payload(cbor2.dumps(body)))


@FUZZ
@given(st.sampled_from([3, 5, 6]), st.integers(0, 12), CBOR_VALUES)
def test_signed_bodies_with_one_replaced_column(part: int, key: int, value: object) -> None:
    body = cbor2.loads(CBOR_BODY)
    if part == 3:
        body[3] = value
    elif isinstance(body[part], dict):
        body[part][key] = value
    else:
        body[part][key % len(body[part])] = value
    only_wire_errors(signed_payload(zstandard.ZstdCompressor().compress(cbor2.dumps(body))))


@FUZZ
@given(st.sampled_from([0, 2, 3, 7, 8, 9, 10]), st.integers(-6, -1) | st.binary(min_size=1, max_size=4))
def test_signed_version_6_readings_with_a_column_cut_or_extended(key: int, change: int | bytes) -> None:
    """Version 6 states no count in keys 2, 3 and 8: the reader works them out from key 0, and a
    column cut short or running on must still end in a wire error, alone and in a group."""
    body = cbor2.loads(CBOR_BODY)
    assert body[0] == 6
    readings = body[5]
    column = readings.get(key, b"")
    if isinstance(column, list):
        column = column[0] if column and isinstance(column[0], bytes) else b""
    readings[key] = column[:change] if isinstance(change, int) else column + change
    blob = signed_payload(cbor2.dumps(body))
    only_wire_errors(blob)
    [grouped] = verify_group([(parse_sign1(blob), KEY.public_key(), "gw-fuzz", None)])
    assert isinstance(grouped, (Batch, *WIRE_ERRORS))


def test_the_context_mixed_sample_itself_decodes() -> None:
    assert len(verify_and_decode(signed_payload(MIXED_BODY), RING).readings) == 240


@FUZZ
@given(
    st.integers(-40, -1) | st.binary(min_size=1, max_size=40),
    st.lists(st.integers(0, 8 * 40 - 1), max_size=4),
)
def test_signed_context_mixed_columns_cut_extended_or_flipped(change: int | bytes, bits: list[int]) -> None:
    """Method 8's parameters and coder bytes garbled: a wire error or values, alone and in a group."""
    body = cbor2.loads(MIXED_BODY)
    column = bytearray(body[5][3])
    for bit in bits:
        column[bit // 8 % len(column)] ^= 1 << (bit % 8)
    body[5][3] = bytes(column[:change] if isinstance(change, int) else column + change)
    blob = signed_payload(cbor2.dumps(body))
    only_wire_errors(blob)
    [grouped] = verify_group([(parse_sign1(blob), KEY.public_key(), "gw-fuzz", None)])
    assert isinstance(grouped, (Batch, *WIRE_ERRORS))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({11: b"\x01" * 8}, "not both"),  # the table and a catalogue id
        ({4: None, 11: b"\x01" * 7}, "8 bytes"),
        ({4: None, 11: "id"}, "catalogue id must be of type bytes"),
        ({4: None}, "catalogue id must be of type bytes"),  # neither
    ],
)
def test_a_body_with_a_bad_catalogue_reference_is_malformed(change: dict[int, object], error: str) -> None:
    fields = cbor2.loads(CBOR_BODY)
    for key, value in change.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
    blob = signed_payload(zstandard.ZstdCompressor().compress(cbor2.dumps(fields)))
    with pytest.raises(MalformedBatch, match=error):
        verify_and_decode(blob, RING)


def test_a_well_formed_reference_to_an_unknown_catalogue_is_its_own_error() -> None:
    fields = cbor2.loads(CBOR_BODY)
    fields.pop(4)
    fields[11] = b"\x02" * 8
    blob = signed_payload(zstandard.ZstdCompressor().compress(cbor2.dumps(fields)))
    with pytest.raises(UnknownCatalogue) as caught:
        verify_and_decode(blob, RING)
    assert caught.value.catalogue == b"\x02" * 8
