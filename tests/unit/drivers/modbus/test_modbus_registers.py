"""Register decoding: every type and byte/word order against known register contents."""

from __future__ import annotations

import contextlib
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.registers import DataType, WordOrder, decode_words, encode_value
from kernel.errors import ProtocolError

# Every type in every order, the registers written out by hand from the value's big-endian bytes
# (ABCD: registers in order; CDAB: registers reversed; BADC: bytes swapped in each register;
# DCBA: both). 123.456 as IEEE 754 float32 is 42 F6 E9 79, pi as float64 is 40 09 21 FB 54 44 2D 18,
# -2 as int32 is FF FF FF FE, -3 as int64 is FF FF FF FF FF FF FF FD.
KNOWN = [
    (DataType.FLOAT32, WordOrder.ABCD, [0x42F6, 0xE979], 123.456),
    (DataType.FLOAT32, WordOrder.CDAB, [0xE979, 0x42F6], 123.456),
    (DataType.FLOAT32, WordOrder.BADC, [0xF642, 0x79E9], 123.456),
    (DataType.FLOAT32, WordOrder.DCBA, [0x79E9, 0xF642], 123.456),
    (DataType.UINT32, WordOrder.ABCD, [0x1234, 0x5678], 0x12345678),
    (DataType.UINT32, WordOrder.CDAB, [0x5678, 0x1234], 0x12345678),
    (DataType.UINT32, WordOrder.BADC, [0x3412, 0x7856], 0x12345678),
    (DataType.UINT32, WordOrder.DCBA, [0x7856, 0x3412], 0x12345678),
    (DataType.INT32, WordOrder.ABCD, [0xFFFF, 0xFFFE], -2),
    (DataType.INT32, WordOrder.CDAB, [0xFFFE, 0xFFFF], -2),
    (DataType.INT32, WordOrder.BADC, [0xFFFF, 0xFEFF], -2),
    (DataType.INT32, WordOrder.DCBA, [0xFEFF, 0xFFFF], -2),
    (DataType.INT32, WordOrder.ABCD, [0x8000, 0x0000], -(2**31)),
    (DataType.INT16, WordOrder.ABCD, [0xFFFF], -1),
    (DataType.INT16, WordOrder.ABCD, [0x8000], -32768),
    (DataType.INT16, WordOrder.CDAB, [0xFFFE], -2),
    (DataType.INT16, WordOrder.BADC, [0xFEFF], -2),
    (DataType.INT16, WordOrder.DCBA, [0x0080], -32768),
    (DataType.UINT16, WordOrder.ABCD, [0x1234], 0x1234),
    (DataType.UINT16, WordOrder.CDAB, [0x1234], 0x1234),
    (DataType.UINT16, WordOrder.BADC, [0x3412], 0x1234),
    (DataType.UINT16, WordOrder.DCBA, [0x3412], 0x1234),
    (DataType.UINT64, WordOrder.ABCD, [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    (DataType.UINT64, WordOrder.CDAB, [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    (DataType.UINT64, WordOrder.BADC, [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
    (DataType.UINT64, WordOrder.DCBA, [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    (DataType.UINT64, WordOrder.ABCD, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], 2**64 - 1),
    (DataType.INT64, WordOrder.ABCD, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD], -3),
    (DataType.INT64, WordOrder.CDAB, [0xFFFD, 0xFFFF, 0xFFFF, 0xFFFF], -3),
    (DataType.INT64, WordOrder.BADC, [0xFFFF, 0xFFFF, 0xFFFF, 0xFDFF], -3),
    (DataType.INT64, WordOrder.DCBA, [0xFDFF, 0xFFFF, 0xFFFF, 0xFFFF], -3),
    (DataType.INT64, WordOrder.ABCD, [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    (DataType.FLOAT64, WordOrder.ABCD, [0x3FF0, 0, 0, 0], 1.0),
    (DataType.FLOAT64, WordOrder.ABCD, [0x4009, 0x21FB, 0x5444, 0x2D18], math.pi),
    (DataType.FLOAT64, WordOrder.CDAB, [0x2D18, 0x5444, 0x21FB, 0x4009], math.pi),
    (DataType.FLOAT64, WordOrder.BADC, [0x0940, 0xFB21, 0x4454, 0x182D], math.pi),
    (DataType.FLOAT64, WordOrder.DCBA, [0x182D, 0x4454, 0xFB21, 0x0940], math.pi),
    (DataType.BOOL, WordOrder.ABCD, [0], 0),
    (DataType.BOOL, WordOrder.ABCD, [7], 1),
    (DataType.BOOL, WordOrder.DCBA, [0x0100], 1),
    # a string keeps the byte swap of its order; registers of text are never reversed
    (DataType.STRING, WordOrder.ABCD, [0x4845, 0x4C4C, 0x4F00], "HELLO"),
    (DataType.STRING, WordOrder.CDAB, [0x4845, 0x4C4C, 0x4F20], "HELLO"),
    (DataType.STRING, WordOrder.BADC, [0x4548, 0x4C4C, 0x004F], "HELLO"),
    (DataType.STRING, WordOrder.DCBA, [0x4548, 0x4C4C, 0x004F], "HELLO"),
]


@pytest.mark.parametrize(("dtype", "order", "words", "expected"), KNOWN)
def test_known_register_contents_decode(dtype, order, words, expected):
    value = decode_words(words, dtype, order)
    if isinstance(expected, float):
        assert value == pytest.approx(expected, rel=1e-6)
    else:
        assert value == expected


@pytest.mark.parametrize(("dtype", "order", "words", "expected"), KNOWN)
def test_encoding_gives_back_the_registers_a_device_sends(dtype, order, words, expected):
    if dtype is DataType.STRING:
        assert encode_value(expected, dtype, order, length=len(words)) == [
            w if w != 0x4F20 else 0x4F00 for w in words
        ]
    elif dtype is not DataType.BOOL:
        assert encode_value(expected, dtype, order) == words


# 0x01A0 = 0000 0001 1010 0000: bits 5..8 hold 0b1101 = 13; BADC/DCBA devices send the register's
# bytes swapped
BIT_FIELDS = [
    (WordOrder.ABCD, [0x01A0]),
    (WordOrder.CDAB, [0x01A0]),
    (WordOrder.BADC, [0xA001]),
    (WordOrder.DCBA, [0xA001]),
]


@pytest.mark.parametrize(("order", "words"), BIT_FIELDS)
def test_bit_field_in_every_order(order, words):
    assert decode_words(words, DataType.BITS, order, bit=5, width=4) == 13
    assert decode_words(words, DataType.BITS, order, bit=8, width=1) == 1
    assert decode_words(words, DataType.BITS, order, bit=9, width=7) == 0
    assert encode_value(13, DataType.BITS, order, bit=5) == words


def test_bit_field_takes_width_bits_from_bit():
    assert decode_words([0b1010_0000], DataType.BITS, bit=5, width=3) == 0b101
    assert decode_words([0x8000], DataType.BITS, bit=15) == 1
    assert decode_words([0x8000], DataType.BITS, bit=14) == 0


def test_wrong_register_count_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        decode_words([1], DataType.FLOAT32)
    with pytest.raises(ProtocolError):
        decode_words([1, 2, 3], DataType.INT64)


def test_word_out_of_range_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        decode_words([0x10000], DataType.UINT16)


NUMERIC = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32]
NUMERIC += [DataType.INT64, DataType.UINT64]
RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


@settings(max_examples=250)
@given(st.sampled_from(NUMERIC), st.sampled_from(list(WordOrder)), st.data())
def test_integers_round_trip_in_every_order(dtype, order, data):
    low, high = RANGES[dtype]
    value = data.draw(st.integers(low, high))
    assert decode_words(encode_value(value, dtype, order), dtype, order) == value


@settings(max_examples=250)
@given(st.floats(allow_nan=False, width=32), st.sampled_from(list(WordOrder)))
def test_float32_round_trips_in_every_order(value, order):
    assert decode_words(encode_value(value, DataType.FLOAT32, order), DataType.FLOAT32, order) == value


@settings(max_examples=250)
@given(st.floats(allow_nan=False), st.sampled_from(list(WordOrder)))
def test_float64_round_trips_in_every_order(value, order):
    assert decode_words(encode_value(value, DataType.FLOAT64, order), DataType.FLOAT64, order) == value


def test_nan_from_a_meter_stays_nan():
    words = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    value = decode_words(words, DataType.FLOAT32)
    assert isinstance(value, float) and math.isnan(value)


@settings(max_examples=300)
@given(
    st.lists(st.integers(-5, 0x10005), max_size=6),
    st.sampled_from(list(DataType)),
    st.sampled_from(list(WordOrder)),
)
def test_any_registers_decode_or_raise_only_protocol_error(words, dtype, order):
    with contextlib.suppress(ProtocolError):
        decode_words(words, dtype, order)
