"""The compact header of version 5: gateway from the key, creation time in seconds, registry codes
in series rows, plain bodies where a zstd frame does not pay (docs/wire-format.md, 2, 3 and 3.6)."""

from __future__ import annotations

from pathlib import Path

import cbor2
import numpy as np
import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import wire
from gateway.wire import Keyring, ReadingColumns, SeriesInfo, encode_batch, kid_for, sign
from gateway.wire.body import body_cbor
from gateway.wire.implied import restore_counts
from gateway.wire.series_codes import QUANTITIES, UNITS
from kernel.errors import BadSignature, MalformedBatch

KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
KID = kid_for(KEY.public_key())
T0 = 1_764_150_000_000
PRESSURE = SeriesInfo("sand-point", "air_pressure", "hPa", 1.0, 1000)


def ring() -> Keyring:
    keys = Keyring()
    keys.add("gw-7", KEY.public_key())
    return keys


def readings(n: int, value: float = 1012.0) -> ReadingColumns:
    return ReadingColumns(
        series=np.zeros(n, np.int32),
        ts_ms=T0 + 3_600_000 * np.arange(n),
        value=np.full(n, value),
        quality=np.zeros(n, np.uint16),
    )


def fields_of(body: bytes) -> dict[int, object]:
    decoded = cbor2.loads(body_cbor(body))
    assert isinstance(decoded, dict)
    return decoded


def test_the_registry_in_the_spec_is_the_one_the_library_codes_with() -> None:
    page = (Path(__file__).parents[4] / "docs" / "wire-format.md").read_text()
    section = page.split("### 3.6", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip().strip("`") for c in line.split("|")[1:-1]] for line in section.splitlines()]
    table = [r for r in rows if len(r) == 3 and r[0].isdigit()]
    assert [r[1] for r in table if r[1]] == list(QUANTITIES)
    assert [r[2] for r in table if r[2]] == list(UNITS)
    assert len(set(QUANTITIES)) == len(QUANTITIES) and len(set(UNITS)) == len(UNITS)


def test_a_constant_hourly_series_alone_costs_less_than_the_plain_baseline() -> None:
    """Issue 17's worst series (6,000 hours of 1012 hPa): 196 bytes in version 4, its plain baseline
    150 (40 bytes of data, 110 of envelope)."""
    blob = sign(
        encode_batch(gateway_id="gw-7", seq=2, created_ms=T0, series=[PRESSURE], readings=readings(6000)),
        KEY,
        KID,
    )
    assert len(blob) <= 150
    batch = wire.verify_and_decode(blob, ring())
    assert (batch.gateway_id, batch.version, len(batch.readings)) == ("gw-7", 6, 6000)
    assert batch.series == (PRESSURE,)


def test_a_small_body_travels_without_a_frame_and_a_large_one_in_zstd() -> None:
    small = encode_batch(gateway_id="gw-7", seq=1, created_ms=T0, series=[PRESSURE], readings=readings(3))
    assert (
        small[:1] == b"\xa5" and fields_of(small)[0] == 6
    )  # a map of 5: version, seq, time, table, readings
    noisy = readings(3000, 0.0)
    noisy.value[:] = np.tile(np.random.default_rng(1).integers(900, 1100, 50), 60)  # zstd sees repeats
    large = encode_batch(gateway_id="gw-7", seq=2, created_ms=T0, series=[PRESSURE], readings=noisy)
    assert large[:4] == b"\x28\xb5\x2f\xfd"
    assert len(large) < len(cbor2.dumps(fields_of(large)))
    for body in (small, large):
        assert wire.verify_and_decode(sign(body, KEY, KID), ring()).readings.value.tolist()[:3] == (
            [1012.0] * 3 if body is small else noisy.value[:3].tolist()
        )


def test_a_plain_body_of_an_earlier_version_is_malformed() -> None:
    fields = fields_of(
        encode_batch(gateway_id="gw-7", seq=1, created_ms=T0, series=[PRESSURE], readings=readings(3))
    )
    v5_readings = restore_counts(fields[5], [PRESSURE], T0 // 1000)  # version 6 implies some counts
    v4 = {
        **fields,
        0: 4,
        1: "gw-7",
        3: T0,
        4: [["sand-point", "air_pressure", "hPa", 0, 1000]],
        5: v5_readings,
    }
    assert (
        wire.verify_and_decode(
            sign(zstandard.ZstdCompressor().compress(cbor2.dumps(v4)), KEY, KID), ring()
        ).version
        == 4
    )
    with pytest.raises(MalformedBatch, match="version-4 body must travel in a zstd frame"):
        wire.verify_and_decode(sign(cbor2.dumps(v4), KEY, KID), ring())


def test_the_creation_time_travels_in_whole_seconds() -> None:
    body = encode_batch(
        gateway_id="gw-7", seq=1, created_ms=T0 + 1999, series=[PRESSURE], readings=readings(2)
    )
    assert fields_of(body)[3] == (T0 + 1000) // 1000
    assert wire.verify_and_decode(sign(body, KEY, KID), ring()).created_ms == T0 + 1000


def test_series_rows_use_registry_codes_and_keep_other_names_as_text() -> None:
    table = [
        PRESSURE,
        SeriesInfo("meter-1", "voltage_l1", "V", 0.1, 1),
        SeriesInfo("probe-1", "water_temperature", "degF", None, 1000),
    ]
    columns = ReadingColumns(series=[0, 1, 2], ts_ms=[T0] * 3, value=[1012.0, 230.1, 50.5], quality=[0] * 3)
    body = encode_batch(gateway_id="gw-7", seq=1, created_ms=T0, series=table, readings=columns)
    assert fields_of(body)[4] == [
        ["sand-point", QUANTITIES.index("air_pressure"), UNITS.index("hPa"), 0],  # 1000 ms: the default
        ["meter-1", "voltage_l1", UNITS.index("V"), 1, 1],
        ["probe-1", QUANTITIES.index("water_temperature"), "degF", None],
    ]
    batch = wire.verify_and_decode(sign(body, KEY, KID), ring())
    assert batch.series == tuple(table)
    assert batch.catalogue == wire.catalogue_of(table)  # the hash of the version-4 form


@pytest.mark.parametrize(
    ("row", "why"),
    [
        (["s", len(QUANTITIES), 0, 0], "quantity code"),
        (["s", 0, -1, 0], "unit code"),
        (["s", 0, 0], "series row"),
        (["s", 0, 0, 0, 1000, 1], "series row"),
        (["s", 0, 0, 0, 0], "time resolution"),
    ],
)
def test_a_row_outside_the_format_is_malformed(row: list[object], why: str) -> None:
    fields = fields_of(
        encode_batch(gateway_id="gw-7", seq=1, created_ms=T0, series=[PRESSURE], readings=readings(2))
    )
    with pytest.raises(MalformedBatch, match=why):
        wire.verify_and_decode(sign(cbor2.dumps({**fields, 4: [row]}), KEY, KID), ring())


def test_a_tool_with_a_bare_key_knows_the_gateway_only_when_told_or_named() -> None:
    body = encode_batch(gateway_id="gw-7", seq=1, created_ms=T0, series=[PRESSURE], readings=readings(2))
    named = encode_batch(
        gateway_id="gw-7", seq=1, created_ms=T0, series=[PRESSURE], readings=readings(2), name_gateway=True
    )
    blob, named_blob = sign(body, KEY, KID), sign(named, KEY, KID)
    assert wire.verify_with_key(blob, KEY.public_key()).gateway_id == ""
    assert wire.verify_with_key(blob, KEY.public_key(), gateway_id="gw-7").gateway_id == "gw-7"
    assert wire.verify_with_key(named_blob, KEY.public_key()).gateway_id == "gw-7"
    with pytest.raises(BadSignature, match="claims gateway 'gw-7'"):
        wire.verify_with_key(named_blob, KEY.public_key(), gateway_id="gw-8")
    assert wire.verify_and_decode(named_blob, ring()).gateway_id == "gw-7"


def test_a_rollover_is_checked_against_the_gateway_of_the_key() -> None:
    """The proof signs the gateway id, which the body leaves out: the key's gateway is used, so a
    proof made for another gateway is refused."""
    new_key = Ed25519PrivateKey.from_private_bytes(b"\x08" * 32)

    def announcing(gateway: str) -> bytes:
        body = encode_batch(
            gateway_id="gw-7", seq=1, created_ms=T0, series=[PRESSURE], readings=readings(2),
            rollover=wire.make_rollover(gateway, KID, new_key),
        )  # fmt: skip
        return sign(body, KEY, KID)

    assert wire.verify_and_decode(announcing("gw-7"), ring()).rollover is not None
    with pytest.raises(BadSignature, match="rollover"):
        wire.verify_and_decode(announcing("gw-other"), ring())
    with pytest.raises(BadSignature, match="gateway id of the key"):
        wire.verify_with_key(announcing("gw-7"), KEY.public_key())
