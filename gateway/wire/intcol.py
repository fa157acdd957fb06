"""Integer columns: a method byte, then the integers packed by that method.

Method 0: zigzag LEB128 varints (left to the body's zstd). Method 1: canonical Huffman
(`huffman.py`) as uvarint count, uvarint table size T, T code lengths as 4-bit nibbles (high
nibble first, a zero nibble pads an odd T), then the bit stream. The encoder keeps the smaller.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.errors import MalformedBatch
from gateway.wire import huffman, varint

METHOD_VARINT = 0
METHOD_HUFFMAN = 1
#: at most this many values in one column (bounds what a hostile count can make us allocate)
MAX_VALUES = 1_000_000

IntArray = npt.NDArray[np.int64]


def pack(values: npt.ArrayLike) -> bytes:
    """The smaller of the two encodings of a column of signed 64-bit integers."""
    ints = np.asarray(values, dtype=np.int64)
    if ints.size < 16:
        return bytes([METHOD_VARINT]) + varint.pack(ints)
    symbols, extra_count, extra = huffman.symbols_of(ints)
    lengths = huffman.code_lengths(symbols)
    bits = int(lengths[symbols].sum() + extra_count.sum())
    table = huffman.write_table(lengths)
    if (bits + 7) // 8 + len(table) + 4 >= varint.packed_size(ints):
        return bytes([METHOD_VARINT]) + varint.pack(ints)
    header = bytes([METHOD_HUFFMAN]) + huffman.uvarint(ints.size) + table
    return header + huffman.encode_symbols(symbols, extra_count, extra, lengths)


def unpack(data: bytes, count: int) -> IntArray:
    """Exactly `count` integers from a packed column; MalformedBatch otherwise."""
    values = unpack_any(data)
    if values.size != count:
        raise MalformedBatch(f"integer column holds {values.size} values, expected {count}")
    return values


def unpack_any(data: bytes) -> IntArray:
    """All integers of a packed column."""
    if not data:
        raise MalformedBatch("empty integer column (the method byte is missing)")
    method = data[0]
    if method == METHOD_VARINT:
        return varint.unpack(data[1:])
    if method == METHOD_HUFFMAN:
        count, pos = huffman.read_uvarint(data, 1)
        if count > MAX_VALUES:
            raise MalformedBatch(f"integer column claims {count} values")
        lengths, pos = huffman.read_table(data, pos, huffman.ALPHABET)
        return huffman.decode(data[pos:], lengths, count)
    raise MalformedBatch(f"unknown integer column method {method}")
