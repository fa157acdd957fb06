"""Method 7 (format version 5): method 1's symbols coded by a context model, their extra bits raw.

A column whose steps are wide (irradiance in W/m2, dust in ug/m3: varints of two bytes) shows an
order-2 context model one integer per context where it needs two, and spends the model on low
bits that are noise. Method 1 already splits each integer into a symbol (its magnitude class and
two bits below the leading one) and verbatim extra bits; here the symbols, one byte each, go to
PPMd or brotli and the extra bits follow as they are (hourly PM10 at the soiling site: Huffman
4,727 bytes, brotli over the varints 4,815, brotli over the symbols plus raw extra bits 4,686;
greensboro irradiance by the day 3,940 -> 3,891). docs/wire-format.md, section 4, defines it.
"""

from __future__ import annotations

import brotli
import numpy as np
import numpy.typing as npt
import pyppmd

from gateway.wire import huffman, modelled
from kernel.errors import MalformedBatch

METHOD_MODELLED_SYMBOLS = 7
#: coder byte 0: brotli; 2..16: PPMd var. H of that order (1 MiB, as method 5)
CODER_BROTLI = 0

IntArray = npt.NDArray[np.int64]


def pack(ints: IntArray, period: int = 1, coder: int = modelled.PPMD_ORDER) -> bytes:
    """Count, period, coder, stream length, the coded symbols in layout order, then the extra bits."""
    symbols, extra_count, extra = huffman.symbols_of(modelled.laid_out(ints, period))
    content = symbols.astype(np.uint8).tobytes()
    if coder == CODER_BROTLI:
        stream: bytes = brotli.compress(content, quality=11, lgwin=16)
    else:
        encoder = pyppmd.Ppmd7Encoder(coder, modelled.PPMD_MEMORY)
        stream = encoder.encode(content) + encoder.flush(endmark=False)
    head = bytes([METHOD_MODELLED_SYMBOLS]) + huffman.uvarint(ints.size) + huffman.uvarint(period)
    head += bytes([coder]) + huffman.uvarint(len(stream))
    return head + stream + huffman.pack_fields(extra, extra_count)


def unpack(data: bytes, count: int, pos: int) -> IntArray:
    """The `count` integers of a method-7 column whose count ends at `pos`."""
    period, pos = huffman.read_uvarint(data, pos)
    if not 1 <= period <= modelled.MAX_PERIOD:
        raise MalformedBatch(f"layout period must be 1 to {modelled.MAX_PERIOD}, got {period}")
    coder = data[pos] if pos < len(data) else -1
    if coder != CODER_BROTLI and not 2 <= coder <= modelled.MAX_PPMD_ORDER:
        raise MalformedBatch(f"symbol coder must be 0 (brotli) or a PPMd order 2..16, got {coder}")
    length, pos = huffman.read_uvarint(data, pos + 1)
    if pos + length > len(data):
        raise MalformedBatch(f"symbol stream of {length} bytes runs past the column's end")
    stream, bits = data[pos : pos + length], data[pos + length :]
    content = _unbrotli(stream, count) if coder == CODER_BROTLI else _unppmd(stream, coder, count)
    symbols = np.frombuffer(content, dtype=np.uint8).astype(np.int64)
    widths = huffman.extra_counts(symbols)
    total = int(widths.sum())
    if len(bits) != (total + 7) // 8:
        raise MalformedBatch(f"extra bits take {len(bits)} bytes, the symbols need {(total + 7) // 8}")
    extra = huffman.read_fields(bits, np.cumsum(widths) - widths, widths)
    return modelled.in_order(huffman.values_of(symbols, extra), period)


def _unppmd(stream: bytes, order: int, count: int) -> bytes:
    decoder = pyppmd.Ppmd7Decoder(order, modelled.PPMD_MEMORY)
    try:
        content: bytes = decoder.decode(stream, count)  # one call, as method 5
    except Exception as exc:  # pyppmd raises ValueError, PpmdError and bare SystemError on bad streams
        raise MalformedBatch(f"PPMd symbol stream does not decode: {exc}") from None
    if len(content) != count:
        raise MalformedBatch(f"PPMd symbol stream ends after {len(content)} of its {count} symbols")
    return content


def _unbrotli(stream: bytes, count: int) -> bytes:
    decoder = brotli.Decompressor()
    try:
        content: bytes = decoder.process(stream, output_buffer_limit=count + 1)
    except brotli.error as exc:
        raise MalformedBatch(f"brotli symbol stream does not decode: {exc}") from None
    if len(content) != count or not decoder.is_finished():
        raise MalformedBatch(f"brotli symbol stream must hold exactly {count} symbols and end there")
    return content
