"""A second decoder written from docs/wire-format.md alone (cbor2, zstandard, lzma, Python loops).

It shares no code with gateway.wire: if the two disagree, the page or the library is wrong.
"""

from __future__ import annotations

import hashlib
import lzma
import struct
from pathlib import Path
from typing import Any

import brotli
import cbor2
import ctxmix_reference
import numpy as np
import pyppmd
import pytest
import zstandard
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.wire import (
    Envelope,
    Event,
    Gap,
    Keyring,
    ReadingColumns,
    SeriesInfo,
    WindowColumns,
    catalogue_of,
    ctxmix,
    encode_batch,
    intcol,
    kid_for,
    make_rollover,
    modelled,
    modelled_symbols,
    sign,
    varint,
    verify_and_decode,
    verify_with_key,
)

T0 = 1_764_150_000_000
PAGE = (Path(__file__).parents[4] / "docs" / "wire-format.md").read_text()


# ---- the reference decoder (section numbers refer to docs/wire-format.md) ----


def uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def unzigzag(z: int) -> int:
    return z // 2 if z % 2 == 0 else -(z + 1) // 2


def read_table(data: bytes, pos: int) -> tuple[dict[str, int], int]:
    """Section 4: nibble code lengths -> {bit string of the code: symbol} (canonical codes)."""
    size, pos = uvarint(data, pos)
    nibbles = []
    for byte in data[pos : pos + (size + 1) // 2]:
        nibbles += [byte >> 4, byte & 15]
    lengths = nibbles[:size]
    used = sorted((length, symbol) for symbol, length in enumerate(lengths) if length)
    codes: dict[str, int] = {}
    code, previous = 0, 0
    for length, symbol in used:
        code <<= length - previous
        codes[format(code, f"0{length}b")] = symbol
        code, previous = code + 1, length
    return codes, pos + (size + 1) // 2


def int_symbol_extra(symbol: int) -> int:
    return 0 if symbol < 16 else 2 + (symbol - 16) // 4


def int_from_symbol(symbol: int, extra: int) -> int:
    if symbol < 16:
        return unzigzag(symbol)
    b = 4 + (symbol - 16) // 4
    return unzigzag(((4 + (symbol - 16) % 4) << (b - 2)) | extra)


def read_symbols(bits: str, codes: dict[str, int], count: int, extra_of: Any) -> list[tuple[int, int]]:
    out, pos = [], 0
    for _ in range(count):
        code = ""
        while code not in codes:
            code += bits[pos]
            pos += 1
        symbol = codes[code]
        width = extra_of(symbol)
        out.append((symbol, int(bits[pos : pos + width] or "0", 2)))
        pos += width
    return out


def bit_string(data: bytes) -> str:
    return "".join(format(byte, "08b") for byte in data)


def int_column(data: bytes, implied: int | None = None) -> list[int]:
    """Section 4; `implied`: the count a version-6 column leaves to its context (it then states
    neither its count nor, when sparse, its number of nonzero entries, and b"" holds zeros)."""
    if implied is not None and data == b"":
        return [0] * implied
    if data[0] == 0:
        values, pos = [], 1
        while pos < len(data):
            z, pos = uvarint(data, pos)
            values.append(unzigzag(z))
        assert implied is None or len(values) == implied
        return values
    count, pos = uvarint(data, 1) if implied is None else (implied, 1)
    if data[0] == 3:  # sparse: m, factor, then m gaps (zeros skipped), then the m nonzero values / factor
        nonzero, pos = uvarint(data, pos) if implied is None else (-1, pos)
        factor, pos = uvarint(data, pos)
        numbers = []
        while pos < len(data):
            z, pos = uvarint(data, pos)
            numbers.append(z)
        nonzero = len(numbers) // 2 if implied is not None else nonzero
        assert len(numbers) == 2 * nonzero
        out, at = [0] * count, -1
        for gap, z in zip(numbers[:nonzero], numbers[nonzero:], strict=True):
            at += gap + 1
            out[at] = unzigzag(z) * factor
        return out
    if data[0] == 8:  # context mixing (version 6): uvarint 2 P + h, uvarint M, then the coder's bytes
        both, pos = uvarint(data, pos)
        modulus, pos = uvarint(data, pos)
        return ctxmix_reference.decode(data[pos:], count, [both >> 1, both & 1, modulus])
    if data[0] in (5, 6):  # PPMd var. H or brotli over method 0's varints, laid out by a period
        return modelled_column(data, count, pos, implied is not None)
    if data[0] == 7:  # method 1's symbols, one byte each, PPMd or brotli; then their extra bits
        return symbols_column(data, count, pos)
    if data[0] in (2, 4):  # byte planes: plane b holds byte b (least significant first) of every value
        width, planes = data[pos], data[pos + 1 :]
        if data[0] == 4:  # the planes as a raw LZMA1 stream, lc = lp = pb = 0, 64 KiB dictionary
            lzma1 = {"id": lzma.FILTER_LZMA1, "lc": 0, "lp": 0, "pb": 0, "dict_size": 1 << 16}
            planes = lzma.decompress(planes, format=lzma.FORMAT_RAW, filters=[lzma1])
        assert len(planes) == count * width
        return [unzigzag(sum(planes[b * count + i] << (8 * b) for b in range(width))) for i in range(count)]
    assert data[0] == 1
    codes, pos = read_table(data, pos)
    pairs = read_symbols(bit_string(data[pos:]), codes, count, int_symbol_extra)
    return [int_from_symbol(s, e) for s, e in pairs]


def modelled_column(data: bytes, count: int, pos: int, implied: bool = False) -> list[int]:
    """Section 4, methods 5 and 6; `implied`: version 6 states PPMd's content length minus the count."""
    period, pos = uvarint(data, pos)
    if data[0] == 5:  # order byte, content length, then a Ppmd7 (var. H) stream with 1 MiB of model
        order, (length, pos) = data[pos], uvarint(data, pos + 1)
        length += count if implied else 0
        content = pyppmd.Ppmd7Decoder(order, 1 << 20).decode(data[pos:], length)
        assert len(content) == length
    else:
        content = brotli.decompress(data[pos:])
    laid, at = [], 0
    while at < len(content):
        z, at = uvarint(content, at)
        laid.append(unzigzag(z))
    return in_layout_order(laid, count, period)


def symbols_column(data: bytes, count: int, pos: int) -> list[int]:
    """Section 4, method 7."""
    period, pos = uvarint(data, pos)
    coder, (length, pos) = data[pos], uvarint(data, pos + 1)
    stream, bits = data[pos : pos + length], bit_string(data[pos + length :])
    if coder == 0:
        symbols = brotli.decompress(stream)
    else:
        symbols = pyppmd.Ppmd7Decoder(coder, 1 << 20).decode(stream, count)
    laid, at = [], 0
    for symbol in symbols:
        width = int_symbol_extra(symbol)
        laid.append(int_from_symbol(symbol, int(bits[at : at + width] or "0", 2)))
        at += width
    assert len(bits) - at < 8 and set(bits[at:]) <= {"0"}
    return in_layout_order(laid, count, period)


def in_layout_order(laid: list[int], count: int, period: int) -> list[int]:
    """Section 4, the period layout undone."""
    assert len(laid) == count
    rows = count // period if count >= 2 * period else 0
    if period < 2 or rows == 0:
        return laid
    # laid[c * rows + r] is integer r * period + c; the tail after the full rows is as it was
    out = [0] * count
    for r in range(rows):
        for c in range(period):
            out[r * period + c] = laid[c * rows + r]
    return out[: rows * period] + laid[rows * period :]


def grid_column(data: bytes, implied: int | None = None) -> list[tuple[int, int]]:
    """Section 5: (k, r) pairs; version 6 leaves the count to the context (`implied`)."""
    count, pos = uvarint(data, 0) if implied is None else (implied, 0)
    codes, pos = read_table(data, pos)
    size, pos = uvarint(data, pos)
    pairs = read_symbols(bit_string(data[pos : pos + size]), codes, count, lambda s: int_symbol_extra(s // 4))
    escaped = iter(int_column(data[pos + size :]))
    out = []
    for symbol, extra in pairs:
        side = symbol % 4
        r = {0: 0, 1: -1, 2: 1}[side] if side < 3 else next(escaped)
        out.append((int_from_symbol(symbol // 4, extra), r))
    return out


def positions(column: bytes) -> list[int]:
    out, at = [], 0
    for i, step in enumerate(int_column(column)):
        at = step if i == 0 else at + step
        out.append(at)
    return out


def value_of(q: int, scale: Any) -> float:
    """Section 3.1."""
    if isinstance(scale, int):
        return q / 10.0**scale if scale >= 0 else q * 10.0**-scale
    return q * scale


def float64s(data: bytes) -> list[float]:
    return [struct.unpack("<d", data[i : i + 8])[0] for i in range(0, len(data), 8)]


def readings(
    r: dict[int, Any], table: list[list[Any]], created_s: int, version: int = 5
) -> list[tuple[int, int, float, int]]:
    """Section 3.2: [(series, ts_ms, value, quality)] in wire order; `created_s`: version 5's creation
    time, the origin of the first timestamp head (3.2.1); version 6 implies the counts of keys 2, 3, 8."""
    if isinstance(r[0], bytes):  # version 5: one int-column, the counts then the heads
        counts, heads = int_column(r[0])[: len(table)], int_column(r[0])[len(table) :]
    else:
        counts, heads = r[0], r[1]
    series_of = [s for s, c in enumerate(counts) for _ in range(c)]
    live = [s for s, c in enumerate(counts) if c]
    quantised = [s for s in live if table[s][3] is not None]
    if live:
        heads = [heads[0] + created_s * 1000 // table[live[0]][4], *heads[1:]]
    t_heads = np.cumsum(heads[: len(live)]).tolist()
    q_heads = np.cumsum(heads[len(live) :]).tolist()
    v6 = version >= 6
    n_dods = sum(c - 1 for c in counts if c)
    if isinstance(r.get(2), int):  # version 6: every series regular at one interval
        dods = iter([d for c in counts if c > 1 for d in [r[2]] + [0] * (c - 2)])
    else:
        dods = iter(int_column(r[2], n_dods if v6 else None) if 2 in r else [0] * n_dods)
    triples = r.get(7, [])
    if isinstance(triples, bytes):  # version 5: every series, then every a, then every j
        packed = int_column(triples)
        triples = [packed[i :: len(packed) // 3] for i in range(len(packed) // 3)]
    grids = {g[0]: (g[1], g[2]) for g in triples}
    plain_series = [s for s in quantised if counts[s] > 1 and s not in grids]
    groups = r.get(9, [0] * len(plain_series))
    group_of = dict(zip(plain_series, groups, strict=True))
    predictor_of = dict(zip(plain_series, r.get(10, [0] * len(plain_series)), strict=True))
    columns = r.get(3, [b""] * (max(groups, default=0) + 1))  # version 6: absent, all zeros
    columns = [columns] if isinstance(columns, bytes) else columns  # version 6: one group, no array
    in_group = [sum(counts[s] - 1 for s in plain_series if group_of[s] == g) for g in range(len(columns))]
    group_steps = [iter(int_column(c, n if v6 else None)) for c, n in zip(columns, in_group, strict=True)]
    on_grid = sum(counts[s] - 1 for s in quantised if counts[s] > 1 and s in grids)
    grid_steps = iter(grid_column(r[8], on_grid if v6 else None) if 8 in r else [])
    floats = iter(float64s(r.get(4, b"")))
    out = []
    for s in live:
        tres, scale = table[s][4], table[s][3]
        t, delta, q = t_heads[live.index(s)], 0, None
        if scale is not None:
            q = q_heads[quantised.index(s)]
        steps: list[int] = []  # section 3.2.8: the steps so far, for the predictor
        for i in range(counts[s]):
            if i > 0:
                delta += next(dods)
                t += delta
                if scale is not None and s in grids:
                    a, j = grids[s]
                    k, residual = next(grid_steps)
                    q += (2 * k * a + j) // (2 * j) + residual
                elif scale is not None and predictor_of[s] == -1:  # the level: q - the first q
                    q = q_heads[quantised.index(s)] + next(group_steps[group_of[s]])
                elif scale is not None and isinstance(predictor_of[s], list):  # circular steps
                    modulus, above = predictor_of[s]
                    low = q_heads[quantised.index(s)] - above
                    q = low + (q - low + next(group_steps[group_of[s]])) % modulus
                elif scale is not None:
                    p = predictor_of[s]
                    before = steps[-p] if p and len(steps) >= p else 0
                    steps.append(next(group_steps[group_of[s]]) + before)
                    q += steps[-1]
            value = next(floats) if scale is None else value_of(q, scale)
            out.append((s, t * tres, value, 0))
    assert len(out) == len(series_of)
    if 6 in r:
        for at, value in zip(positions(r[6][0]), float64s(r[6][1]), strict=True):
            out[at] = (*out[at][:2], value, 0)
    if 5 in r and isinstance(r[5], bytes):  # version 5's runs: r lengths, then r flags
        runs = int_column(r[5])
        half = len(runs) // 2
        flag_of = [f for length, f in zip(runs[:half], runs[half:], strict=True) for _ in range(length)]
        out = [(*row[:3], f) for row, f in zip(out, flag_of, strict=True)]
    elif 5 in r:
        for at, flags in zip(positions(r[5][0]), int_column(r[5][1]), strict=True):
            out[at] = (*out[at][:3], flags)
    return out


def windows(w: list[Any]) -> dict[str, list[Any]]:
    """Section 3.3."""
    names = ["series", "window_start", "window_ms", "rev", "count", "nan_count"]
    names += ["min", "max", "mean", "std", "first", "last", "first_ts", "last_ts"]
    out: dict[str, list[Any]] = {}
    for name, column in zip(names, w[1:], strict=True):
        if name in ("min", "max", "mean", "std", "first", "last"):
            out[name] = float64s(column)
        elif name in ("first_ts", "last_ts"):
            out[name] = [d + s for d, s in zip(int_column(column), out["window_start"], strict=True)]
        else:
            out[name] = np.cumsum(int_column(column)).tolist()
    return out


def registry() -> tuple[list[str], list[str]]:
    """Section 3.6: the quantity and unit names by code, read from the page's table."""
    section = PAGE.split("### 3.6", 1)[1].split("\n## ", 1)[0]
    quantities: list[str] = []
    units: list[str] = []
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.split("|")[1:-1]]
        if len(cells) == 3 and cells[0].isdigit():
            assert int(cells[0]) == max(len(quantities), len(units))
            quantities += [cells[1]] if cells[1] else []
            units += [cells[2]] if cells[2] else []
    return quantities, units


def expand_row(row: list[Any]) -> list[Any]:
    """Section 3.6: a version-5 series row in the version-4 form (names, time resolution)."""
    quantities, units = registry()
    sensor, quantity, unit, scale, *rest = row
    quantity = quantities[quantity] if isinstance(quantity, int) else quantity
    unit = units[unit] if isinstance(unit, int) else unit
    return [sensor, quantity, unit, scale, rest[0] if rest else 1000]


def parts_of(blob: bytes) -> list[Any]:
    """Section 1: the four elements of the COSE_Sign1 array, untagged (compact) or under tag 18."""
    message = cbor2.loads(blob)
    return list(message.value if isinstance(message, cbor2.CBORTag) else message)


def reference_decode(
    blob: bytes,
    public_key_raw: bytes,
    catalogues: dict[bytes, list[Any]] | None = None,
    gateway_id: str = "gw-spec",
) -> dict[str, Any]:
    """Sections 1-3, with the signature checked as section 1 says; `catalogues` are the tables of
    section 3.5 by id, as earlier batches declared them; `gateway_id` is the gateway the key is
    registered for."""
    protected, _, payload, signature = parts_of(blob)
    header = cbor2.loads(protected)
    kid = hashlib.sha256(public_key_raw).digest()[:8]
    if isinstance(cbor2.loads(blob), cbor2.CBORTag):  # section 1: the tagged envelope of earlier writers
        assert cbor2.loads(blob).tag == 18
        assert header == {1: -8, 4: kid}
    else:  # the compact one: the first 4 bytes of the kid, EdDSA implied by the key
        assert header == {4: kid[:4]}
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    Ed25519PublicKey.from_public_bytes(public_key_raw).verify(signature, to_be_signed)
    body = cbor2.loads(body_of(payload))
    assert body[0] in (1, 2, 3, 4, 5, 6)
    v5 = body[0] >= 5  # version 6 is version 5 with the counts of 3.2's columns implied
    assert not v5 or body.get(1, gateway_id) == gateway_id  # section 3: the key's gateway
    gateway = gateway_id if v5 else body[1]
    if 4 in body:  # the table itself; versions 4 and 5 declare the catalogue it hashes to (3.5)
        table = [expand_row(row) for row in body[4]] if v5 else body[4]
        catalogue = hashlib.sha256(cbor2.dumps(table, canonical=True)).digest()[:8]
    else:
        catalogue = body[11]
        table = (catalogues or {})[catalogue]
    rollover = body.get(10)
    if rollover is not None:  # section 3.4: the new key signs [context, gateway, old kid, new key]
        statement = cbor2.dumps(["rostock-gateway key rollover v1", gateway, kid, rollover[0]])
        Ed25519PublicKey.from_public_bytes(rollover[0]).verify(rollover[1], statement)
    return {
        "epoch": body[9] if 2 <= body[0] <= 3 else body.get(9, bytes(16)),
        "rollover": rollover,
        "gateway_id": gateway,
        "seq": body[2],
        "created_ms": body[3] * 1000 if v5 else body[3],
        "series": table,
        "catalogue": catalogue if body[0] >= 4 else None,
        "readings": readings(body[5], table, body[3] if v5 else 0, body[0]) if 5 in body else [],
        "windows": windows(body[6]) if 6 in body else None,
        "gaps": body.get(7, []),
        "events": body.get(8, []),
    }


def body_of(payload: bytes) -> bytes:
    """Section 2: a payload starting with a CBOR map head is the body, anything else a zstd frame."""
    return payload if 0xA0 <= payload[0] <= 0xBF else zstandard.ZstdDecompressor().decompress(payload)


# ---- the comparison ----


def rich_batch() -> tuple[bytes, list[SeriesInfo], ReadingColumns, WindowColumns, Ed25519PrivateKey]:
    rng = np.random.default_rng(5)
    table = [
        SeriesInfo("weather-1", "air_temperature", "Cel", 0.01, 1000),
        SeriesInfo("baro-1", "air_pressure", "kPa", 1e-5, 1000),
        SeriesInfo("raw-1", "voltage", "V", None),
        SeriesInfo("counter-1", "vehicles", "1", 100.0),
        SeriesInfo("noise-1", "level", "dB", 0.5, 250),
        SeriesInfo("strain-1", "strain", "1", 1e-6),
        SeriesInfo("unused", "x", "y", 0.1),
        SeriesInfo("sun-1", "global_irradiance", "W/m2", 1.0, 1000),
        SeriesInfo("tide-1", "water_level", "m", 0.001, 1000),
        SeriesInfo("pump-1", "flow", "l/min", 1.0, 1000),
    ]
    n = 300
    hours = np.arange(480)
    sun = np.round(np.maximum(0, 800 * np.sin(2 * np.pi * (hours % 24 - 6) / 24)) * rng.uniform(0.9, 1, 480))
    tide = np.round(20 + 0.5 * np.sin(np.arange(n) / 40), 3)
    pump = np.tile(rng.integers(0, 300, 37), 10).astype(np.float64)  # a 37-minute duty cycle
    pressure = np.round((8_851_000 + np.round(np.cumsum(rng.integers(-20, 21, n)) * 50 / 3)) / 1e5, 5)
    temperature = np.round(12 + np.cumsum(rng.normal(0, 0.05, n)), 2)
    temperature[[7, 100]] = [np.nan, np.inf]
    columns = ReadingColumns(
        series=np.concatenate(
            [np.zeros(n), np.ones(n), [2, 2, 2], [3] * 20, [4] * 40, [5] * n, [7] * 480, [8] * n, [9] * 370]
        ),
        ts_ms=np.concatenate(
            [
                T0 + 60_000 * np.arange(n) + rng.integers(-200, 200, n),
                T0 + 60_000 * np.arange(n),
                [T0 + 5, T0 + 3, T0 + 3],
                T0 + 3_600_000 * np.arange(20),
                T0 + rng.integers(0, 10**6, 40),
                T0 + 1000 * np.arange(n),
                T0 + 3_600_000 * hours,
                T0 + 600_000 * np.arange(n),
                T0 + 60_000 * np.arange(370),
            ]
        ),
        value=np.concatenate(
            [
                temperature,
                pressure,
                [0.1, np.nan, -0.0],
                rng.integers(0, 50, 20) * 100.0,
                rng.integers(40, 90, 40) / 2,
                np.cumsum(rng.integers(-(10**6), 10**6, n)) / 1e6,
                sun,
                tide,
                pump,
            ]
        ),
        quality=(rng.random(n * 4 + 913) < 0.1) * rng.integers(1, 32, n * 4 + 913),
    )
    m = 30
    start = T0 + 300_000 * np.arange(m)
    window_columns = WindowColumns(
        series=rng.integers(0, 5, m),
        window_start=start,
        window_ms=np.full(m, 300_000),
        rev=rng.integers(0, 2, m),
        count=rng.integers(0, 6, m),
        nan_count=rng.integers(0, 2, m),
        min=rng.normal(size=m),
        max=rng.normal(size=m),
        mean=rng.normal(size=m),
        std=rng.normal(size=m),
        first=rng.normal(size=m),
        last=rng.normal(size=m),
        first_ts=start + rng.integers(0, 1000, m),
        last_ts=start + rng.integers(250_000, 300_000, m),
    )
    key = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
    body = encode_batch(
        gateway_id="gw-spec",
        seq=99,
        created_ms=T0,
        series=table,
        readings=columns,
        windows=window_columns,
        gaps=[Gap(2, T0, T0 + 10, 3, "buffer full")],
        events=[Event(T0, "uplink", "reconnected", "after 3 attempts")],
        epoch=bytes(range(16)),
        rollover=make_rollover(
            "gw-spec", kid_for(key.public_key()), Ed25519PrivateKey.from_private_bytes(bytes(31) + b"\x01")
        ),
    )
    return sign(body, key, kid_for(key.public_key())), table, columns, window_columns, key


@pytest.fixture(scope="module")
def decoded() -> tuple[dict[str, Any], Any]:
    blob, _, _, _, key = rich_batch()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ring = Keyring()
    ring.add("gw-spec", key.public_key())
    return reference_decode(blob, raw), verify_and_decode(blob, ring)


def test_the_sample_exercises_every_part_of_the_format() -> None:
    blob = rich_batch()[0]
    body = cbor2.loads(body_of(parts_of(blob)[2]))
    # every readings key, grids, groups, predictors included (version 5 has its heads in key 0)
    assert set(body[5]) == set(range(11)) - {1}
    assert {0, 1, 24} <= set(body[5][10])  # previous value, linear, daily (the hourly sun)
    quality = [body[5][5]] if isinstance(body[5][5], bytes) else body[5][5]  # runs or positions
    columns = [body[5][2], *body[5][3], *quality, body[5][6][0], *body[6][1:7], *body[6][13:]]
    assert {0, 1, 3} <= {column[0] for column in columns}  # varints, Huffman, sparse (2: see below)
    assert len(body[5][3]) > 1  # temperature, counter and noise steps in more than one group
    assert int_column(body[5][7]) == [1, 50, 3]  # the pressure series rides a grid (series, a, j)


@pytest.mark.parametrize("form", [bytes, list])
def test_reference_decoder_reads_both_forms_of_quality_flags(form: type) -> None:
    """Runs for a sensor out of range for 300 readings, positions for 20 scattered flags."""
    key = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
    rng = np.random.default_rng(3)
    quality = np.zeros(500, np.uint16)
    if form is bytes:
        quality[100:400] = 32
    else:
        quality[rng.choice(500, 20, replace=False)] = rng.integers(1, 64, 20)
    columns = ReadingColumns(
        series=np.zeros(500, np.int32),
        ts_ms=T0 + 1000 * np.arange(500),
        value=np.round(np.sin(np.arange(500) / 20), 2),
        quality=quality,
    )
    table = [SeriesInfo("dew-1", "dew_point", "Cel", 0.01, 1000)]
    body = encode_batch(gateway_id="gw-spec", seq=1, created_ms=T0, series=table, readings=columns)
    blob = sign(body, key, kid_for(key.public_key()))
    assert isinstance(cbor2.loads(body_of(parts_of(blob)[2]))[5][5], form)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert [q for _, _, _, q in reference_decode(blob, raw)["readings"]] == quality.tolist()


def test_reference_decoder_agrees_on_readings(decoded: tuple[dict[str, Any], Any]) -> None:
    reference, batch = decoded
    ours = list(
        zip(
            batch.readings.series.tolist(),
            batch.readings.ts_ms.tolist(),
            batch.readings.value.tolist(),
            batch.readings.quality.tolist(),
            strict=True,
        )
    )
    assert len(ours) == len(reference["readings"]) == 2113
    for mine, theirs in zip(ours, reference["readings"], strict=True):
        assert mine[:2] == theirs[:2] and mine[3] == theirs[3]
        assert struct.pack("<d", mine[2]) == struct.pack("<d", theirs[2])


@pytest.mark.parametrize("method", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
def test_reference_decoder_reads_every_integer_column_method(
    method: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer picks methods by size; here every column is forced to one method in turn."""
    packers = {
        0: lambda v: b"\x00" + varint.pack(v),
        1: intcol.pack_huffman,
        2: intcol.pack_planes,
        3: intcol.pack_sparse,
        4: intcol.pack_lzma_planes,
        5: modelled.pack_ppmd,
        6: modelled.pack_brotli,
        7: lambda v: modelled.pack_ppmd(v, period=7, order=3),  # every layout row of a week of days
        8: lambda v: modelled.pack_brotli(v, period=3),
        9: lambda v: modelled_symbols.pack(v, period=5, coder=3),  # method 7, PPMd order 3
        10: lambda v: modelled_symbols.pack(v, coder=modelled_symbols.CODER_BROTLI),  # method 7, brotli
    }
    monkeypatch.setattr(
        intcol,
        "pack",
        lambda values, plain=False, period=1: packers[method](np.asarray(values, np.int64)),
    )
    blob, _, _, _, key = rich_batch()
    body = cbor2.loads(body_of(parts_of(blob)[2]))
    assert body[5][2][0] == {7: 5, 8: 6, 9: 7, 10: 7}.get(method, method)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ring = Keyring()
    ring.add("gw-spec", key.public_key())
    ours = verify_and_decode(blob, ring).readings
    theirs = reference_decode(blob, raw)["readings"]
    assert [(s, t, q) for s, t, _, q in theirs] == list(
        zip(ours.series.tolist(), ours.ts_ms.tolist(), ours.quality.tolist(), strict=True)
    )
    assert [struct.pack("<d", v) for _, _, v, _ in theirs] == [
        struct.pack("<d", v) for v in ours.value.tolist()
    ]


def test_reference_decoder_agrees_on_everything_else(decoded: tuple[dict[str, Any], Any]) -> None:
    reference, batch = decoded
    assert (reference["gateway_id"], reference["seq"], reference["created_ms"], reference["epoch"]) == (
        batch.gateway_id,
        batch.seq,
        batch.created_ms,
        batch.epoch,
    )
    assert batch.rollover is not None
    assert reference["rollover"] == [batch.rollover.new_public_key, batch.rollover.proof]
    assert [row[:3] for row in reference["series"]] == [[s.sensor, s.quantity, s.unit] for s in batch.series]
    for name, column in reference["windows"].items():
        assert np.array_equal(np.array(column), getattr(batch.windows, name)), name
    assert reference["gaps"] == [[g.series, g.from_ms, g.to_ms, g.count, g.reason] for g in batch.gaps]
    assert reference["events"] == [[e.ts_ms, e.source, e.kind, e.detail] for e in batch.events]


def test_reference_decoder_reads_the_tagged_envelope_of_earlier_writers(
    decoded: tuple[dict[str, Any], Any],
) -> None:
    """Section 1: the same body under tag 18 with {1: -8, 4: kid}; its rollover proof names the same kid."""
    blob, _, _, _, key = rich_batch()
    tagged = sign(parts_of(blob)[2], key, kid_for(key.public_key()), Envelope.TAGGED)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    reference, _ = decoded
    again = reference_decode(tagged, raw)
    for name in ("gateway_id", "seq", "created_ms", "series", "rollover", "epoch", "catalogue"):
        assert again[name] == reference[name], name
    assert len(tagged) == len(blob) + 7


def test_decoded_values_are_the_input_at_its_resolution(decoded: tuple[dict[str, Any], Any]) -> None:
    _, table, columns, _, _ = rich_batch()
    _, batch = decoded
    order = np.lexsort((columns.ts_ms, columns.series))
    expected = []
    for s, v in zip(columns.series[order].tolist(), columns.value[order].tolist(), strict=True):
        resolution = table[s].resolution
        expected.append(v if resolution is None or not np.isfinite(v) else round(v / resolution) * resolution)
    got = batch.readings.value.tolist()
    for e, g in zip(expected, got, strict=True):
        assert e == g or (np.isnan(e) and np.isnan(g)) or abs(e - g) <= 1e-9 * max(1.0, abs(e))


def test_the_example_in_the_spec_is_what_the_library_writes() -> None:
    example = PAGE.split("**Example**", 1)[1].split("```", 2)[1]
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    body = encode_batch(
        gateway_id="gw-1",
        seq=7,
        created_ms=1764150000000,
        series=[SeriesInfo("weather-1", "air_temperature", "Cel", 0.01, 1000)],
        readings=ReadingColumns(
            series=[0, 0, 0],
            ts_ms=[1764150000000, 1764150060000, 1764150120000],
            value=[12.34, 12.36, 12.35],
            quality=[0, 0, 0],
        ),
        epoch=bytes(range(16)),
    )
    assert sign(body, key, kid_for(key.public_key())).hex() == "".join(example.split())


def test_reference_decoder_follows_a_catalogue_declared_by_an_earlier_batch() -> None:
    """Section 3.5: a batch that refers to its catalogue decodes with the table an earlier batch declared."""
    blob, table, columns, windows, key = rich_batch()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    declaring = reference_decode(blob, public)
    body = encode_batch(
        gateway_id="gw-spec", seq=100, created_ms=T0, series=table, readings=columns,
        windows=windows, epoch=bytes(range(16)), refer_to_catalogue=True,
    )  # fmt: skip
    referring_blob = sign(body, key, kid_for(key.public_key()))
    referring = reference_decode(referring_blob, public, {declaring["catalogue"]: declaring["series"]})
    assert referring["catalogue"] == declaring["catalogue"] == catalogue_of(table)
    assert repr(referring["readings"]) == repr(declaring["readings"])  # NaN values too
    assert len(referring_blob) < len(blob) - 60  # the table stays home
    ours = verify_with_key(referring_blob, key.public_key(), {catalogue_of(table): tuple(table)}.get)
    assert [(s.sensor, s.quantity) for s in ours.series] == [(r[0], r[1]) for r in declaring["series"]]


def _hourly(values: np.ndarray) -> list[tuple[int, float]]:
    """(timestamp, value) of `values` read once an hour from T0."""
    return list(zip((T0 + 3_600_000 * np.arange(values.size)).tolist(), values.tolist(), strict=True))


def _hourly_through_the_reference(
    series: SeriesInfo, values: np.ndarray
) -> tuple[dict[int, Any], list[tuple[int, float]]]:
    """`values` of one series read once an hour from T0, written by the library and signed: the
    written body, and the (timestamp, value) pairs the reference decoder reads back."""
    key = Ed25519PrivateKey.from_private_bytes(b"\x0b" * 32)
    readings = ReadingColumns(
        np.zeros(values.size, np.int64),
        T0 + 3_600_000 * np.arange(values.size),
        values,
        np.zeros(values.size, np.uint16),
    )
    written = encode_batch(gateway_id="gw-spec", seq=2, created_ms=T0, series=[series], readings=readings)
    blob = sign(written, key, kid_for(key.public_key()))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    theirs = reference_decode(blob, raw)["readings"]
    return cbor2.loads(body_of(parts_of(blob)[2])), [(t, v) for _, t, v, _ in theirs]


def _wind_in_knots(seed: int) -> np.ndarray:
    """Hourly wind speed that dwells near a few levels: its level is a better context than its step."""
    rng = np.random.default_rng(seed)
    levels, at = np.array([0, 7, 13, 22, 30]), 0
    knots = np.zeros(3000)
    for i in range(knots.size):
        if rng.random() < 0.15:
            at = int(rng.integers(0, levels.size))
        knots[i] = max(0, levels[at] + (rng.random() < 0.3) * int(rng.integers(-1, 2)))
    return knots


@pytest.mark.usefixtures("without_the_coder")
def test_reference_decoder_reads_levels_as_residuals() -> None:
    """Section 3.2.8, predictor -1 (version 5): the column holds q - the first q, here PPMd-coded."""
    knots = _wind_in_knots(2)
    body, decoded = _hourly_through_the_reference(SeriesInfo("anemo-1", "wind_speed", "kn", 1.0, 1000), knots)
    assert body[5][10] == [-1] and body[5][3][0] == 5  # version 6: one group's column, no array
    assert decoded == _hourly(knots)


def _vane_near_north(seed: int) -> np.ndarray:
    """Hourly wind direction at 10 degrees that dwells and veers back and forth across north
    (360 and 10 degrees are neighbours; 0 is calm), as the two TMY3 stations' do."""
    rng = np.random.default_rng(seed)
    sector, degrees = 0, np.zeros(3000)
    for i in range(degrees.size):
        if rng.random() < 0.2:
            sector = (sector + int(rng.integers(-2, 3))) % 36
        degrees[i] = 0.0 if rng.random() < 0.01 else 10.0 * (sector + 1)
    return degrees


@pytest.mark.usefixtures("without_the_coder")
def test_reference_decoder_reads_circular_steps() -> None:
    """Section 3.2.8, predictor [M, a] (version 5): steps wrapped round the vane's circle."""
    degrees = _vane_near_north(3)
    vane = SeriesInfo("vane-1", "wind_from_direction", "deg", 10.0, 1000)
    body, decoded = _hourly_through_the_reference(vane, degrees)
    first = int(degrees[0] / 10)
    assert body[5][10] == [[37, first]]  # 0..36 tens of degrees, the first `first` above 0
    assert decoded == _hourly(degrees)


@pytest.mark.parametrize("history", [0, 1], ids=["steps", "levels"])
def test_reference_decoder_reads_context_mixed_steps(history: int) -> None:
    """Section 4, method 8 (version 6): the steps (or, under predictor -1, the levels) of an hourly
    series through the context-mixing coder, day period 24 (four days: the reference coder of
    section 4.1 takes milliseconds a value)."""
    key = Ed25519PrivateKey.from_private_bytes(b"\x0d" * 32)
    knots = _wind_in_knots(4)[:96]
    ts = T0 + 3_600_000 * np.arange(knots.size)
    readings = ReadingColumns(np.zeros(knots.size, np.int64), ts, knots, np.zeros(knots.size, np.uint16))
    table = [SeriesInfo("anemo-2", "wind_speed", "kn", 1.0, 1000)]
    body = cbor2.loads(body_of(encode_batch(gateway_id="gw-spec", seq=4, created_ms=T0, series=table,
                                            readings=readings)))  # fmt: skip
    steps = np.diff(knots.astype(np.int64))
    ints = np.cumsum(steps) if history else steps
    body[5][3] = b"\x08" + bytes([2 * 24 + history, 0]) + ctxmix.encode(ints, [24, history, 0])
    body[5][10] = [-1] if history else [0]
    blob = sign(cbor2.dumps(body), key, kid_for(key.public_key()))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    theirs = reference_decode(blob, raw)["readings"]
    assert [(t, v) for _, t, v, _ in theirs] == list(zip(ts.tolist(), knots.tolist(), strict=True))
    ring = Keyring()
    ring.add("gw-spec", key.public_key())
    assert verify_and_decode(blob, ring).readings.value.tolist() == knots.tolist()
