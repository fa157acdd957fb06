"""Context-modelled integer columns (format version 5): PPMd (method 5) and brotli (method 6).

Both code method 0's zigzag LEB128 varints with a model that adapts as it goes, so no table
travels with the column (which is what makes them pay on small batches too), and both see the
previous bytes as context, which a per-column order-0 Huffman code cannot: consecutive steps of
hourly weather are strongly correlated (greensboro air temperature: Huffman 3,075 bytes, PPMd
order 2 over the varints 2,733). The integers may first be laid out by *period* p: the column is
read as rows of p integers and sent column by column, so that the same hour of consecutive days
stands side by side (the irradiance of a day is the irradiance of the day before, not of the hour
before). docs/wire-format.md, section 4, defines both methods byte by byte.
"""

from __future__ import annotations

import brotli
import numpy as np
import numpy.typing as npt
import pyppmd

from gateway.wire import huffman, varint
from kernel.errors import MalformedBatch

METHOD_PPMD = 5
METHOD_BROTLI = 6
#: PPMd var. H model size: 1 MiB holds the whole model of any column we measured (6,000 hourly
#: steps use far less; 16 MiB gave the same bytes on every shared series), and bounds what a
#: column makes a reader allocate for the model
PPMD_MEMORY = 1 << 20
#: order 2 was the smallest on 21 of the 22 shared series (orders 3 and 4: 0.3-2.6 % larger;
#: precipitation, 102 -> 100 bytes at order 3, is the exception); readers take 2..16
PPMD_ORDER = 2
MAX_PPMD_ORDER = 16
#: a layout period beyond this gains nothing (a day of 1-s readings is 86,400) and would let a
#: hostile column ask for absurd reshapes
MAX_PERIOD = 1 << 17

IntArray = npt.NDArray[np.int64]


def laid_out(ints: IntArray, period: int) -> IntArray:
    """The integers in period layout: full rows of `period` sent column by column, then the tail."""
    return _transposed(ints, period, rows_first=True)


def in_order(laid: IntArray, period: int) -> IntArray:
    """Inverse of `laid_out`."""
    return _transposed(laid, period, rows_first=False)


def has_layout(size: int, period: int) -> bool:
    """Whether a column of `size` integers is laid out by `period`: it must fill two rows."""
    return 2 <= period <= MAX_PERIOD and size >= 2 * period


def _transposed(ints: IntArray, period: int, rows_first: bool) -> IntArray:
    if not has_layout(ints.size, period):
        return ints
    rows = ints.size // period
    shape = (rows, period) if rows_first else (period, rows)
    body = ints[: rows * period].reshape(shape).T.reshape(-1)
    return np.concatenate([body, ints[rows * period :]])


def pack_ppmd(ints: IntArray, period: int = 1, order: int = PPMD_ORDER) -> bytes:
    """Method 5: count, period, order, content length, then the PPMd var. H stream of the varints."""
    content = varint.pack(laid_out(ints, period))
    encoder = pyppmd.Ppmd7Encoder(order, PPMD_MEMORY)
    stream: bytes = encoder.encode(content) + encoder.flush(endmark=False)
    head = bytes([METHOD_PPMD]) + huffman.uvarint(ints.size) + huffman.uvarint(period)
    return head + bytes([order]) + huffman.uvarint(len(content)) + stream


def pack_brotli(ints: IntArray, period: int = 1) -> bytes:
    """Method 6: count, period, then a brotli stream (quality 11, 64 KiB window) of the varints."""
    content = varint.pack(laid_out(ints, period))
    stream: bytes = brotli.compress(content, quality=11, lgwin=16)
    return bytes([METHOD_BROTLI]) + huffman.uvarint(ints.size) + huffman.uvarint(period) + stream


def unpack(data: bytes, method: int, count: int, pos: int) -> IntArray:
    """The `count` integers of a method-5 or method-6 column whose count ends at `pos`."""
    period, pos = huffman.read_uvarint(data, pos)
    if not 1 <= period <= MAX_PERIOD:
        raise MalformedBatch(f"layout period must be 1 to {MAX_PERIOD}, got {period}")
    content = _unppmd(data, pos, count) if method == METHOD_PPMD else _unbrotli(data, pos, count)
    if content and content[-1] >= 0x80:
        raise MalformedBatch("modelled column ends in the middle of a varint")
    laid = varint.unpack(content)
    if laid.size != count:
        raise MalformedBatch(f"modelled column holds {laid.size} values, expected {count}")
    return in_order(laid, period)


def _unppmd(data: bytes, pos: int, count: int) -> bytes:
    """The content of a PPMd stream: exactly its stated length, at most 10 bytes per integer."""
    order = data[pos] if pos < len(data) else 0
    if not 2 <= order <= MAX_PPMD_ORDER:
        raise MalformedBatch(f"PPMd order must be 2 to {MAX_PPMD_ORDER}, got {order}")
    length, pos = huffman.read_uvarint(data, pos + 1)
    if not count <= length <= varint.MAX_BYTES * count:
        raise MalformedBatch(f"PPMd content of {length} bytes cannot hold {count} varints")
    decoder = pyppmd.Ppmd7Decoder(order, PPMD_MEMORY)
    try:
        # one call: pyppmd's decoder resumed over several calls has returned more than was encoded
        content: bytes = decoder.decode(data[pos:], length)
    except Exception as exc:  # pyppmd raises ValueError, PpmdError and bare SystemError on bad streams
        raise MalformedBatch(f"PPMd stream does not decode: {exc}") from None
    if len(content) != length:
        raise MalformedBatch(f"PPMd stream ends after {len(content)} of its {length} bytes")
    return content


def _unbrotli(data: bytes, pos: int, count: int) -> bytes:
    """The content of a brotli stream, decoded to at most 10 bytes per integer (then refused)."""
    limit = varint.MAX_BYTES * count
    stream = brotli.Decompressor()
    try:
        # the limit stops the output buffer from growing past it: a small hostile stream that
        # expands to gigabytes ends here with an unfinished decoder instead
        content: bytes = stream.process(data[pos:], output_buffer_limit=limit + 1)
    except brotli.error as exc:
        raise MalformedBatch(f"brotli stream does not decode: {exc}") from None
    if len(content) > limit or not stream.is_finished():
        raise MalformedBatch(f"brotli stream must end within {limit} bytes and at the column's end")
    return content
