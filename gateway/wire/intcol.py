"""Integer columns: a method byte, then the integers packed by that method.

Method 0: zigzag LEB128 varints (left to the body's zstd). Method 1: canonical Huffman
(`huffman.py`) as uvarint count, uvarint table size T, T code lengths as 4-bit nibbles (high
nibble first, a zero nibble pads an odd T), then the bit stream. Method 2 (format version 3): byte
planes, i.e. uvarint count, one width byte w (1, 2, 4 or 8), then the zigzag values as w-byte
little-endian integers stored plane by plane (every value's lowest byte first, then every value's
next byte...), for zstd to find runs and repeats in. Method 3 (format version 4): sparse, i.e.
uvarint count n, uvarint m, uvarint factor f, then m unsigned LEB128 gaps (the zero entries skipped
before each nonzero entry) and the m nonzero entries divided by f as zigzag varints; every other
entry is 0. Method 4 (version 4):
method 2's count and width, then its planes as one raw LZMA1 stream (lc = lp = pb = 0, 64 KiB).
Methods 5 and 6 (version 5, `modelled`): PPMd or brotli over the varints; method 7 (version 5,
`modelled_symbols`): method 1's symbols through PPMd or brotli, their extra bits raw. Method 8
(version 6, `mixing`): the compiled context-mixing coder, in value-step columns only (`steps` tries it).

The encoder keeps whichever gives the smallest *final* size, i.e. measured after zstd, because
the body's zstd sees every column: a Huffman code removes what zstd's own order-0 stage would, but
hides the repeats zstd's match finder could use (hourly weather deltas: Huffman 3,340 bytes, zstd
over the varints 3,104, over the byte planes 3,095; greensboro air temperature).
"""

from __future__ import annotations

import lzma

import numpy as np
import numpy.typing as npt

from gateway.wire import huffman, modelled, modelled_symbols, varint, zstd_contexts
from kernel.errors import MalformedBatch

METHOD_VARINT = 0
METHOD_HUFFMAN = 1
METHOD_PLANES = 2
METHOD_SPARSE = 3
METHOD_LZMA_PLANES = 4
#: method 4's LZMA1 stream: no literal or position context bits, 64 KiB dictionary (section 4)
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA1, "lc": 0, "lp": 0, "pb": 0, "dict_size": 1 << 16}]
#: at most this many values in one column (bounds what a hostile count can make us allocate)
MAX_VALUES = 1_000_000
#: zstd level the candidates are measured at: the body's (a lower level ranks them differently: on
#: the hourly greensboro dew point Huffman takes 2,649 bytes, byte planes 2,804 at level 3, 2,525 at 12)
MEASURE_LEVEL = 12
#: the level `predict` ranks predictors at (the ranking, not the size, is what counts there)
QUICK_LEVEL = 3
#: the body's level made no column of the benchmark series more than 1.25 times smaller than level
#: 3 did (hourly air pressure as varints: 1,608 -> 1,286 bytes): a column that level 3 leaves this
#: far behind the Huffman code is not measured at the body's level
_DEEPER_SEARCH_GAIN = 1.3
_PLANE_WIDTHS = (1, 2, 4, 8)
#: method 8 (version 6, `mixing`, which takes this number from here); that module is imported where it
#: is used, since the coder's loader imports this one
METHOD_CONTEXT_MIXING = 8
#: the methods whose column starts with its count (all but method 0)
COUNTED_METHODS = (
    METHOD_HUFFMAN,
    METHOD_PLANES,
    METHOD_SPARSE,
    METHOD_LZMA_PLANES,
    modelled.METHOD_PPMD,
    modelled.METHOD_BROTLI,
    modelled_symbols.METHOD_MODELLED_SYMBOLS,
    METHOD_CONTEXT_MIXING,
)
#: the methods whose count is checked before decoding: a context model can expand a few bytes into
#: its stated count
MODELLED_METHODS = (modelled.METHOD_PPMD, modelled.METHOD_BROTLI, modelled_symbols.METHOD_MODELLED_SYMBOLS)
CHECKED_COUNT_METHODS = (*MODELLED_METHODS, METHOD_CONTEXT_MIXING)
#: method 7 is tried where some integer's zigzag needs two varint bytes (below, it codes the same
#: symbols as the varints, with a byte more per column)
_WIDE = 128
#: the context-modelled methods (5, 6) are tried on columns of at least this many integers that
#: the others leave at 1 bit per integer or more (a near-constant column gains nothing from them)
#: and at most MODELLED_BITS: every column where PPMd won had been left at 1.6-5.8 bits per
#: integer; beyond, the varints are mostly two bytes and an order-2 context sees one integer
#: (NEON dew point, 8.8 bits: PPMd 9 % larger than Huffman, and 2.2 ms of a 4 ms batch to learn so)
MODELLED_FROM = 64
MODELLED_BITS = 6
#: ... and at most this many where a day layout applies (series read so seldom that the time is
#: not missed): method 7 models wide steps' symbols (hourly PM10, Huffman at 6.3 bits per integer:
#: 4,727 -> 4,686 bytes)
LAID_OUT_BITS = 12
#: the sparse method is measured when at most this share of a column is nonzero: beyond it every
#: nonzero entry costs a gap byte that the varints' zero runs, which zstd codes as one match, do not
#: (hourly air temperature steps, 77 % nonzero: 3,157 -> 3,490 bytes sparse)
_SPARSE_SHARE = 0.125
#: LZMA is tried on columns of at least this many integers that zstd would get (varints or planes)
#: and takes to at least 1 bit per integer: it costs about 0.2 us per byte to encode (a fifth of the
#: NEON batches' encoding time, spent on their timestamps, which zstd takes to 0.002-0.016 bytes per
#: integer and LZMA never beat); every column where it won took zstd 0.46-0.77 bytes per integer
_LZMA_FROM = 256

IntArray = npt.NDArray[np.int64]
_CONTEXT = bytes(64) + bytes(range(0, 256, 3))
_CONTEXT_SIZE = len(zstd_contexts.compress(_CONTEXT, MEASURE_LEVEL, content_size=False))


def pack(values: npt.ArrayLike, plain: bool = False, period: int = 1) -> bytes:
    """The encoding of a column of signed 64-bit integers that is smallest after zstd (varints if plain).

    Each method is measured on the whole column: measured on its first 2,048 integers only (as
    BtrBlocks samples), hourly temperatures chose Huffman where zstd over the whole is 3 % smaller.
    `period` (the readings per day of the column's series, 1 if unknown) proposes the period
    layout of the context-modelled methods.
    """
    ints = np.asarray(values, dtype=np.int64)
    if ints.size < 16 or plain:
        return pack_varints(ints)
    if not ints.any():  # a constant series' steps: a sparse column without entries (5-7 bytes)
        return pack_sparse(ints)
    packed, size = _smallest_classic(ints)
    most = LAID_OUT_BITS if modelled.has_layout(ints.size, period) else MODELLED_BITS
    if ints.size < MODELLED_FROM or not ints.size <= size * 8 <= most * ints.size:
        return packed
    for candidate in _modelled_candidates(ints, period):
        if len(candidate) < size:  # near incompressible: zstd stores it as it is
            packed, size = candidate, len(candidate)
    return packed


def _modelled_candidates(ints: IntArray, period: int) -> list[bytes]:
    """PPMd over the integers in order and, with a period of at least two rows, PPMd and brotli
    over the integers laid out by it and brotli over them in order.

    Brotli (quality 11) takes about 7 ms for 6,000 steps, 30 times PPMd's time: it is tried only
    where the period layout applies, i.e. on series read so seldom that a batch spans two days
    (the NEON batches, 600 one-minute readings a series, pay nothing). In order it beat the best
    of the rest on hourly relative humidity at Sand Point (Huffman 2,938 bytes, brotli 2,905),
    PM2.5 (3,371 -> 3,361) and circular wind direction (3,006 -> 2,996, 2,546 -> 2,521).
    """
    out = [modelled.pack_ppmd(ints)]
    if modelled.has_layout(ints.size, period):
        out += [modelled.pack_ppmd(ints, period), modelled.pack_brotli(ints, period)]
        out.append(modelled.pack_brotli(ints))
        if int(np.abs(ints).max()) >= _WIDE // 2:  # method 7: the symbols, their extra bits raw
            out += [
                modelled_symbols.pack(ints, p, coder)
                for p in (1, period)
                for coder in (modelled.PPMD_ORDER, modelled_symbols.CODER_BROTLI)
            ]
    return out


def _smallest_classic(ints: IntArray) -> tuple[bytes, int]:
    """The smallest of methods 0 to 4 and its size in the body (after zstd where zstd codes it)."""
    # varints as well as planes: zstd handles both alike, except where a long run of zero planes
    # upsets its parse of the next column (hourly dew point: 2,880 bytes after 12,000 zero bytes of
    # timestamp planes, 2,691 after 6,000 zero varints)
    candidates = [pack_varints(ints)]
    if int(ints.min()) < -64 or int(ints.max()) > 63:  # else planes and varints are the same bytes
        candidates.append(pack_planes(ints))
    if np.count_nonzero(ints) <= _SPARSE_SHARE * ints.size:
        candidates.append(pack_sparse(ints))
    # a Huffman stream has no repeats for a deeper match search to find: level 3 measures it as
    # well as the body's level, and faster
    huffman_packed = pack_huffman(ints)
    huffman_size = quick_size(huffman_packed)
    quick = [quick_size(c) for c in candidates]
    # the body's zstd leaves a Huffman stream as it is: beside a context-modelled column it costs
    # its length (zstd's own measure adds a frame of about 10 bytes)
    huffman_body = min(huffman_size, len(huffman_packed))
    if min(quick) > huffman_size * _DEEPER_SEARCH_GAIN:  # not worth the slower measurement
        return huffman_packed, huffman_body
    sizes = [final_size(c) for c in candidates]
    best = int(np.argmin(sizes))
    if huffman_size <= sizes[best]:
        return huffman_packed, huffman_body
    if ints.size >= _LZMA_FROM and sizes[best] * 8 >= ints.size:  # zstd left >= 1 bit per value
        packed = pack_lzma_planes(ints)
        # its length, not `final_size`: zstd stores an incompressible stretch raw, and with it the
        # stand-in context, which overstated LZMA's size by 57 bytes (hourly wind speed at Sand Point)
        if len(packed) < sizes[best]:
            return packed, len(packed)
    return candidates[best], sizes[best]


def pack_varints(ints: IntArray) -> bytes:
    """Method 0: the zigzag LEB128 varints."""
    return bytes([METHOD_VARINT]) + varint.pack(ints)


def final_size(packed: bytes) -> int:
    """Bytes a packed column adds once zstd has compressed it (at the body's level).

    Measured after a stand-in for the rest of the body (a run of zeros, some incompressible
    bytes), so that zstd's per-frame and per-section costs, which the body pays once, are not
    charged to each candidate (alone, 6,000 zero second differences as byte planes take 29 bytes,
    inside a batch about 4).
    """
    return len(zstd_contexts.compress(_CONTEXT + packed, MEASURE_LEVEL, content_size=False)) - _CONTEXT_SIZE


def body_size(packed: bytes) -> int:
    """About the bytes a packed column adds to the body: `final_size` where zstd codes it, its
    length where it is near incompressible (Huffman, LZMA, PPMd, brotli)."""
    return final_size(packed) if packed[0] in (METHOD_VARINT, METHOD_PLANES, METHOD_SPARSE) else len(packed)


def quick_size(packed: bytes) -> int:
    """About `final_size`, six times faster (zstd level 3)."""
    return len(zstd_contexts.compress(packed, QUICK_LEVEL, content_size=False))


def pack_huffman(ints: IntArray) -> bytes:
    """Method 1: uvarint count, code-length table, bit stream."""
    symbols, extra_count, extra = huffman.symbols_of(ints)
    lengths = huffman.code_lengths(symbols)
    header = bytes([METHOD_HUFFMAN]) + huffman.uvarint(ints.size) + huffman.write_table(lengths)
    return header + huffman.encode_symbols(symbols, extra_count, extra, lengths)


def pack_planes(ints: IntArray) -> bytes:
    """Method 2: uvarint count, width byte, the zigzag values' little-endian bytes plane by plane."""
    z = varint.zigzag(ints)
    top = int(z.max(initial=0))
    width = next(w for w in _PLANE_WIDTHS if w == 8 or top < 1 << (8 * w))
    planes = z.astype(f"<u{width}").view(np.uint8).reshape(-1, width).T
    return bytes([METHOD_PLANES]) + huffman.uvarint(ints.size) + bytes([width]) + planes.tobytes()


def pack_sparse(ints: IntArray) -> bytes:
    """Method 3: count, m, common factor f, the m gaps before the nonzero entries, the entries / f.

    Timestamps of a regular series and the steps of a nearly constant one are runs of zeros that
    zstd codes in a few bytes each; this saves those bytes and the varints' per-match costs (an
    hourly pressure constant for 6,000 hours: body 119 -> 111 bytes).
    """
    where = np.flatnonzero(ints)
    gaps = np.diff(where, prepend=-1) - 1
    unsigned = varint.unzigzag(gaps.astype(np.uint64))  # its zigzag varints are the uvarints of gaps
    nonzero = ints[where]
    factor = _common_factor(nonzero)
    head = bytes([METHOD_SPARSE]) + huffman.uvarint(ints.size) + huffman.uvarint(where.size)
    return head + huffman.uvarint(factor) + varint.pack(unsigned) + varint.pack(nonzero // factor)


def _common_factor(nonzero: IntArray) -> int:
    """The greatest common divisor of the entries (1 when there are none or it exceeds 2^62).

    A series declared finer than it moves (rain at 0.001 mm that falls in whole millimetres) has
    steps that are all multiples of one number; dividing it out shortens every varint (hourly
    precipitation: 41 steps, all multiples of 1,000 units: 138 -> 91 bytes).
    """
    magnitude = np.abs(nonzero)  # -2^63 stays negative: no factor then
    if nonzero.size == 0 or int(magnitude.min()) < 0 or int(magnitude.max()) >= 1 << 62:
        return 1
    return int(np.gcd.reduce(magnitude))


def pack_lzma_planes(ints: IntArray) -> bytes:
    """Method 4: uvarint count, width byte, then method 2's planes as one raw LZMA1 stream.

    LZMA codes each byte with probabilities adapted to what came before and to the length of the
    current match, which zstd's static per-block tables cannot: hourly air temperature steps at
    Sand Point 2,795 -> 2,644 bytes after zstd, Greensboro irradiance (daily predictor) 4,601 -> 4,436.
    """
    planes = pack_planes(ints)
    head_end = 1 + len(huffman.uvarint(ints.size)) + 1
    stream = lzma.compress(planes[head_end:], format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    return bytes([METHOD_LZMA_PLANES]) + planes[1:head_end] + stream


def unpack(data: bytes, count: int) -> IntArray:
    """Exactly `count` integers from a packed column; MalformedBatch otherwise."""
    if data[:1] and data[0] in CHECKED_COUNT_METHODS:
        # refused before decoding: a context model can expand a few bytes into its stated count
        stated, _ = huffman.read_uvarint(data, 1)
        if stated != count:
            raise MalformedBatch(f"integer column holds {stated} values, expected {count}")
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
    if method not in COUNTED_METHODS:
        raise MalformedBatch(f"unknown integer column method {method}")
    count, pos = huffman.read_uvarint(data, 1)
    if count > MAX_VALUES:
        raise MalformedBatch(f"integer column claims {count} values")
    if method in (modelled.METHOD_PPMD, modelled.METHOD_BROTLI):
        return modelled.unpack(data, method, count, pos)
    if method == modelled_symbols.METHOD_MODELLED_SYMBOLS:
        return modelled_symbols.unpack(data, count, pos)
    if method == METHOD_CONTEXT_MIXING:
        from gateway.wire import mixing  # here: mixing imports ctxmix, which imports this module

        return mixing.unpack(data, count, pos)
    if method == METHOD_PLANES:
        return _unpack_planes(data, pos, count)
    if method == METHOD_LZMA_PLANES:
        return _unpack_planes(_unlzma(data, pos, count), 0, count)
    if method == METHOD_SPARSE:
        return _unpack_sparse(data, pos, count)
    lengths, pos = huffman.read_table(data, pos, huffman.ALPHABET)
    return huffman.decode(data[pos:], lengths, count)


def _unpack_planes(data: bytes, pos: int, count: int) -> IntArray:
    width = data[pos] if pos < len(data) else 0
    if width not in _PLANE_WIDTHS:
        raise MalformedBatch(f"byte-plane width must be 1, 2, 4 or 8, got {width}")
    raw = data[pos + 1 :]
    if len(raw) != count * width:
        raise MalformedBatch(
            f"byte planes hold {len(raw)} bytes, {count} values of {width} need {count * width}"
        )
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(width, count)
    z = np.ascontiguousarray(planes.T).view(f"<u{width}").reshape(count).astype(np.uint64)
    return varint.unzigzag(z)


def _unpack_sparse(data: bytes, pos: int, count: int) -> IntArray:
    nonzero, pos = huffman.read_uvarint(data, pos)
    if nonzero > count:
        raise MalformedBatch(f"sparse column claims {nonzero} nonzero entries of {count}")
    factor, pos = huffman.read_uvarint(data, pos)
    if not 1 <= factor < 1 << 62:
        raise MalformedBatch(f"sparse column factor must be 1 to 2^62 - 1, got {factor}")
    both = varint.unpack(data[pos:])
    if both.size != 2 * nonzero:
        raise MalformedBatch(f"sparse column holds {both.size} varints, expected {2 * nonzero}")
    gaps = varint.zigzag(both[:nonzero])  # unsigned: the zigzag of the decoded value
    if nonzero and int(gaps.max()) >= count:
        raise MalformedBatch("sparse column gap beyond its count")
    where = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if nonzero and int(where[-1]) >= count:
        raise MalformedBatch("sparse column entry beyond its count")
    values = np.zeros(count, np.int64)
    values[where] = both[nonzero:] * np.int64(factor)  # wraps modulo 2^64 as the format says
    return values


def _unlzma(data: bytes, pos: int, count: int) -> bytes:
    """The width byte and planes of a method-4 column, decompressed to at most count * width bytes."""
    width = data[pos] if pos < len(data) else 0
    if width not in _PLANE_WIDTHS:
        raise MalformedBatch(f"byte-plane width must be 1, 2, 4 or 8, got {width}")
    need = count * width
    stream = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    try:
        planes = stream.decompress(data[pos + 1 :], max_length=need)
        if not stream.eof and len(planes) == need:  # the end marker may still be ahead
            planes += stream.decompress(b"", max_length=1)
    except lzma.LZMAError as exc:
        raise MalformedBatch(f"LZMA planes do not decode: {exc}") from None
    if not stream.eof or stream.unused_data or len(planes) != need:
        raise MalformedBatch(f"LZMA planes must end after exactly {need} bytes")
    return bytes([width]) + planes


#: Huffman columns of more values are decoded alone: their fixed cost is small beside their bits,
#: and the joint chain runs as many doubling rounds for every stream as the longest needs (a group
#: of Dew-point-temp columns of 1,200-6,000 values: 13 ms alone, 23 ms jointly)
JOINT_HUFFMAN_VALUES = 1024


def unpack_many(columns: list[bytes], counts: list[int]) -> IntArray:
    """Exactly counts[i] integers from each columns[i], concatenated: what `unpack` gives for each in
    turn, but the varint columns decoded together and the Huffman columns together (one set of numpy
    calls for a receiver's whole group of batches); MalformedBatch when any column is invalid."""
    out = np.empty(sum(counts), dtype=np.int64)
    offsets = np.cumsum(counts) - np.asarray(counts, dtype=np.int64)
    varints: list[int] = []
    coded: list[int] = []
    streams: list[tuple[bytes, IntArray, int]] = []
    for i, (data, count) in enumerate(zip(columns, counts, strict=True)):
        if data[:1] == bytes([METHOD_VARINT]):
            varints.append(i)
        elif data[:1] == bytes([METHOD_HUFFMAN]) and count <= JOINT_HUFFMAN_VALUES:
            stated, pos = huffman.read_uvarint(data, 1)
            if stated != count:
                raise MalformedBatch(f"integer column holds {stated} values, expected {count}")
            lengths, pos = huffman.read_table_cached(data, pos)
            coded.append(i)
            streams.append((data[pos:], lengths, count))
        else:
            out[offsets[i] : offsets[i] + count] = unpack(data, count)
    if varints:
        _scatter_columns(
            out, offsets, counts, varints, _varints_many([columns[i] for i in varints], counts, varints)
        )
    if coded:
        _scatter_columns(out, offsets, counts, coded, huffman.decode_many(streams))
    return out


def _varints_many(columns: list[bytes], counts: list[int], which: list[int]) -> IntArray:
    """The varint columns' values concatenated; each must end on a complete value and hold its count."""
    payloads = [c[1:] for c in columns]
    if any(p and p[-1] >= 0x80 for p in payloads):
        raise MalformedBatch("varint column ends in the middle of a value")
    values = varint.unpack(b"".join(payloads))
    raw_ends = np.cumsum([len(p) for p in payloads])
    terminators = np.flatnonzero(np.frombuffer(b"".join(payloads), dtype=np.uint8) < 0x80)
    held = np.diff(np.searchsorted(terminators, raw_ends, side="left"), prepend=0)
    if not np.array_equal(held, np.asarray([counts[i] for i in which], dtype=np.int64)):
        raise MalformedBatch("an integer column does not hold the values its counts need")
    return values


def _scatter_columns(
    out: IntArray, offsets: IntArray, counts: list[int], which: list[int], values: IntArray
) -> None:
    """Place the concatenated values of columns `which` at their offsets in `out`."""
    sizes = np.asarray([counts[i] for i in which], dtype=np.int64)
    shift = offsets[which] - (np.cumsum(sizes) - sizes)
    out[np.arange(values.size) + np.repeat(shift, sizes)] = values
