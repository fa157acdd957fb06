"""Canonical Huffman coding of signed integers, vectorised with numpy in both directions.

An integer is zigzag-mapped to z >= 0 and split into a symbol and extra bits, like DEFLATE's length
codes: z < 16 is its own symbol; a larger z with its leading 1 at bit b (b >= 4) becomes symbol
16 + 4 * (b - 4) + (the two bits below the leading 1), followed by its b - 2 lowest bits verbatim.
Symbols are Huffman-coded with a per-column table of code lengths (at most 12 bits, canonical order
as in RFC 1951 section 3.2.2). Decoding finds every symbol start at once by pointer doubling over
"the next symbol starts at p + code length + extra bits", so no Python loop runs per value.
"""

from __future__ import annotations

import heapq

import numpy as np
import numpy.typing as npt

from gateway.wire.varint import unzigzag, zigzag
from kernel.errors import MalformedBatch

MAX_CODE_LENGTH = 12
DIRECT_SYMBOLS = 16
ALPHABET = DIRECT_SYMBOLS + 4 * (64 - 4)
#: integers below 2^53 are exact in float64
_EXACT_IN_FLOAT = 1 << 53

IntArray = npt.NDArray[np.int64]
UIntArray = npt.NDArray[np.uint64]


def symbols_of(values: IntArray) -> tuple[IntArray, IntArray, UIntArray]:
    """(symbol, extra bit count, extra bits) of each value."""
    z = zigzag(values)
    top = int(z.max(initial=0))
    if top < DIRECT_SYMBOLS:  # every value its own symbol (most timestamp columns)
        return z.astype(np.int64), np.zeros(z.size, np.int64), np.zeros(z.size, np.uint64)
    big = z >= DIRECT_SYMBOLS
    if top < _EXACT_IN_FLOAT:
        symbols, extra_count = _split_exact(z, big)
    else:
        lead = _leading_bit(z)
        extra_count = np.where(big, lead - 2, 0)
        mantissa = (z >> np.maximum(lead - 2, 0).astype(np.uint64)).astype(np.int64) & 3
        symbols = np.where(big, DIRECT_SYMBOLS + 4 * (lead - 4) + mantissa, z.astype(np.int64))
    extra = z & ((np.uint64(1) << extra_count.astype(np.uint64)) - np.uint64(1))
    return symbols, extra_count, extra


def symbols_only(values: IntArray) -> IntArray:
    """The symbols of `symbols_of`, without their extra bits (what a histogram needs)."""
    z = zigzag(values)
    top = int(z.max(initial=0))
    if top >= _EXACT_IN_FLOAT:
        return symbols_of(values)[0]
    return z.astype(np.int64) if top < DIRECT_SYMBOLS else _split_exact(z, z >= DIRECT_SYMBOLS)[0]


def _split_exact(z: UIntArray, big: npt.NDArray[np.bool_]) -> tuple[IntArray, IntArray]:
    """(symbol, extra bit count) of zigzag values below 2^53, from their float64 form.

    Exact there: z = m * 2^e with m in [0.5, 1), so the leading 1 is bit e - 1 and the two bits
    below it are floor(8 m) - 4; the symbol 16 + 4 (e - 5) + floor(8 m) - 4 is 4 e + floor(8 m) - 8.
    Half the integer shifts' time (6,000 steps: 25 us, not 50)."""
    mantissa, exponent = np.frexp(z.astype(np.float64))
    e = exponent.astype(np.int64)
    symbols = np.where(big, 4 * e + (mantissa * 8).astype(np.int64) - 8, z.astype(np.int64))
    return symbols, np.where(big, e - 3, 0)


def values_of(symbols: IntArray, extra: UIntArray) -> IntArray:
    """Inverse of `symbols_of`."""
    big = symbols >= DIRECT_SYMBOLS
    offset = np.maximum(symbols - DIRECT_SYMBOLS, 0)
    lead = 4 + offset // 4
    top = (4 | (offset & 3)).astype(np.uint64)
    z = np.where(big, (top << (lead - 2).astype(np.uint64)) | extra, symbols.astype(np.uint64))
    return unzigzag(z.astype(np.uint64))


def extra_counts(symbols: IntArray) -> IntArray:
    """How many verbatim bits follow each symbol."""
    return np.where(symbols >= DIRECT_SYMBOLS, 2 + (symbols - DIRECT_SYMBOLS) // 4, 0)


#: extra bit count per symbol, plus 0 at index -1 (where the decode table has no symbol)
EXTRA_OF = np.append(extra_counts(np.arange(ALPHABET)), 0).astype(np.int32)


def code_lengths(symbols: IntArray, alphabet: int = ALPHABET) -> IntArray:
    """Huffman code lengths (0 = unused) over the alphabet, limited to MAX_CODE_LENGTH bits."""
    counts = np.bincount(symbols, minlength=alphabet).astype(np.int64)
    while True:
        lengths = _huffman_lengths(counts)
        if int(lengths.max(initial=0)) <= MAX_CODE_LENGTH:
            return lengths
        counts = np.where(counts > 0, (counts >> 1) | 1, 0)  # flatten until the code fits


def decode(data: bytes, lengths: IntArray, count: int) -> IntArray:
    """`count` values from a bit stream written by `encode` with the same code lengths."""
    symbols, extra = decode_symbols(data, lengths, count, EXTRA_OF)
    return values_of(symbols, extra)


def encode_symbols(symbols: IntArray, extra_count: IntArray, extra: UIntArray, lengths: IntArray) -> bytes:
    """Each symbol's code followed by its extra bits, most significant bit first."""
    codes = canonical_codes(lengths)[symbols]
    code_length = lengths[symbols]
    if int(extra_count.max(initial=0)) + MAX_CODE_LENGTH <= 64:  # code and extra in one field
        fields = (codes << extra_count.astype(np.uint64)) | extra
        return pack_fields(fields, code_length + extra_count)
    fields = np.empty(2 * symbols.size, dtype=np.uint64)
    widths = np.empty(2 * symbols.size, dtype=np.int64)
    fields[0::2], fields[1::2] = codes, extra
    widths[0::2], widths[1::2] = code_length, extra_count
    return pack_fields(fields, widths)


def decode_symbols(
    data: bytes, lengths: IntArray, count: int, extra_of: npt.NDArray[np.int32]
) -> tuple[IntArray, UIntArray]:
    """`count` (symbol, extra bits) pairs; `extra_of[s]` is the extra bit count of symbol s."""
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    table_symbol, table_length = _decode_table(lengths, extra_of.size - 1)
    longest = MAX_CODE_LENGTH + int(extra_of.max())
    data = data[: (count * longest + 7) // 8]  # never look at more bits than `count` values use
    size = 8 * len(data)
    window = _windows(data)
    # one gather per bit position: how far the symbol starting there reaches (a big step where no
    # code starts, so a chain that meets an invalid code runs into the sink and is caught)
    table_step = np.where(table_length > 0, table_length + extra_of[table_symbol], 1 << 30).astype(np.int32)
    following = np.minimum(np.arange(size, dtype=np.int32) + table_step[window], size + 1)
    starts = _chain(following.astype(np.int32), count, size)
    at_starts = window[starts]
    symbols = table_symbol[at_starts]
    widths = extra_of[symbols].astype(np.int64)
    return symbols, read_fields(data, starts.astype(np.int64) + table_length[at_starts], widths)


def write_table(lengths: IntArray) -> bytes:
    """uvarint T, then the code lengths of symbols 0..T-1 as 4-bit nibbles, high nibble first."""
    used = np.flatnonzero(lengths)
    size = int(used[-1]) + 1 if used.size else 0
    padded = np.zeros(size + size % 2, dtype=np.uint8)
    padded[:size] = lengths[:size]
    return uvarint(size) + bytes(((padded[0::2] << 4) | padded[1::2]).tobytes())


def read_table(data: bytes, pos: int, alphabet: int) -> tuple[IntArray, int]:
    """(code lengths, position after the table) of a table written by `write_table`."""
    size, pos = read_uvarint(data, pos)
    if size > alphabet:
        raise MalformedBatch(f"Huffman table of {size} symbols, the alphabet has {alphabet}")
    nibbles = data[pos : pos + (size + 1) // 2]
    if len(nibbles) != (size + 1) // 2:
        raise MalformedBatch("Huffman table cut off")
    raw = np.frombuffer(nibbles, dtype=np.uint8)
    lengths = np.stack([raw >> 4, raw & 15], axis=1).reshape(-1)[:size].astype(np.int64)
    return lengths, pos + len(nibbles)


def uvarint(n: int) -> bytes:
    """Unsigned LEB128 of one non-negative integer."""
    if n < 0:  # would never end: n >> 7 stays -1
        raise ValueError(f"uvarint of a negative number: {n}")
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of an unsigned LEB128 at `pos`."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise MalformedBatch("unsigned varint cut off or too long")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def canonical_codes(lengths: IntArray) -> UIntArray:
    """Code of each symbol: consecutive integers in (length, symbol) order, as in DEFLATE."""
    codes = np.zeros(lengths.size, dtype=np.uint64)
    code = 0
    previous = 0
    used = np.flatnonzero(lengths)
    for symbol in used[np.argsort(lengths[used], kind="stable")].tolist():
        length = int(lengths[symbol])
        code <<= length - previous
        codes[symbol] = code
        code += 1
        previous = length
    return codes


def _decode_table(lengths: IntArray, alphabet: int) -> tuple[IntArray, IntArray]:
    """Symbol and code length for every MAX_CODE_LENGTH-bit window; -1/0 where no code starts."""
    if lengths.size > alphabet or lengths.min(initial=0) < 0:
        raise MalformedBatch("Huffman table has an invalid size or length")
    if lengths.max(initial=0) > MAX_CODE_LENGTH:
        raise MalformedBatch(f"Huffman code longer than {MAX_CODE_LENGTH} bits")
    used = np.flatnonzero(lengths)
    order = used[np.argsort(lengths[used], kind="stable")]
    spans = np.int64(1) << (MAX_CODE_LENGTH - lengths[order])
    total = int(spans.sum())
    if total > 1 << MAX_CODE_LENGTH:
        raise MalformedBatch("Huffman code lengths oversubscribe the code space")
    fill = (1 << MAX_CODE_LENGTH) - total
    symbol = np.concatenate([np.repeat(order, spans), np.full(fill, -1)]).astype(np.int64)
    length = np.concatenate([np.repeat(lengths[order], spans), np.zeros(fill, np.int64)])
    return symbol, length.astype(np.int64)


def _chain(following: npt.NDArray[np.int32], count: int, size: int) -> npt.NDArray[np.int32]:
    """Positions 0, f(0), f(f(0)), ... (`count` of them) by pointer doubling; all must be < size."""
    sink = np.full(2, size + 1, dtype=np.int32)  # size + 1 is the sink: it jumps to itself
    jump = np.concatenate([following, sink])
    positions = np.zeros(1, dtype=np.int32)
    while positions.size < count:
        positions = np.concatenate([positions, jump[positions]])
        if positions.size < count:
            jump = jump[jump]
    positions = positions[:count]
    if int(positions.max()) >= size:
        raise MalformedBatch("Huffman bit stream ends before all values are decoded")
    return positions


def pack_fields(fields: UIntArray, widths: IntArray) -> bytes:
    """Concatenate big-endian bit fields (each at most 64 bits) and pad to whole bytes with zeros."""
    keep = widths > 0
    if not keep.all():  # a Huffman code's fields are never empty: spare two copies (15 of 90 us)
        fields, widths = fields[keep], widths[keep]
    total = int(widths.sum())
    if total == 0:
        return b""
    ends = np.cumsum(widths)
    word = (ends - widths) >> 6
    end_in_word = ((ends - widths) & 63) + widths
    fits = end_in_word <= 64
    head = np.where(
        fits,
        fields << (64 - np.minimum(end_in_word, 64)).astype(np.uint64),
        fields >> (np.maximum(end_in_word, 64) - 64).astype(np.uint64),
    )
    words = np.zeros((total + 63) // 64 + 1, dtype=np.uint64)
    first = np.flatnonzero(np.concatenate([[True], word[1:] != word[:-1]]))
    words[word[first]] = np.bitwise_or.reduceat(head, first)
    spill = ~fits
    words[word[spill] + 1] |= fields[spill] << (128 - end_in_word[spill]).astype(np.uint64)
    return words.byteswap().tobytes()[: (total + 7) // 8]


def read_fields(data: bytes, starts: IntArray, widths: IntArray) -> UIntArray:
    """Big-endian unsigned integers of `widths` (0..64) bits at bit offsets `starts`."""
    if starts.size and int((starts + widths).max()) > 8 * len(data):
        raise MalformedBatch("bit stream ends inside a value")
    words = _words(data)
    word = starts >> 6
    offset = (starts & 63).astype(np.uint64)
    high = words[word] << offset
    low = np.where(offset > 0, words[word + 1] >> ((64 - offset) & np.uint64(63)), np.uint64(0))
    value = (high | low) >> ((64 - widths) & 63).astype(np.uint64)
    return np.where(widths > 0, value, np.uint64(0))


def _words(data: bytes) -> UIntArray:
    """`data` as big-endian 64-bit words, zero-padded with two spare words."""
    padded = data + bytes(-len(data) % 8 + 16)
    return np.frombuffer(padded, dtype=">u8").astype(np.uint64)


def _windows(data: bytes) -> npt.NDArray[np.int32]:
    """The MAX_CODE_LENGTH bits starting at every bit position of `data` (zeros past the end)."""
    raw = np.frombuffer(data + b"\0\0", dtype=np.uint8).astype(np.int32)
    triples = (raw[:-2] << 16) | (raw[1:-1] << 8) | raw[2:]
    position = np.arange(8 * len(data), dtype=np.int32)
    shift = (24 - MAX_CODE_LENGTH) - (position & 7)
    windows: npt.NDArray[np.int32] = (triples[position >> 3] >> shift) & ((1 << MAX_CODE_LENGTH) - 1)
    return windows


def _huffman_lengths(counts: IntArray) -> IntArray:
    """Code lengths of a Huffman tree over the used symbols (ties broken by symbol, deterministic)."""
    lengths = np.zeros(counts.size, dtype=np.int64)
    used = np.flatnonzero(counts).tolist()
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    parent = [0] * (2 * len(used) - 1)
    heap = [(int(counts[s]), i) for i, s in enumerate(used)]
    heapq.heapify(heap)
    node = len(used)
    while len(heap) > 1:
        c1, n1 = heapq.heappop(heap)
        c2, n2 = heapq.heappop(heap)
        parent[n1] = parent[n2] = node
        heapq.heappush(heap, (c1 + c2, node))
        node += 1
    depth = [0] * node  # the root is the last node; parents are always created after children
    for n in range(node - 2, -1, -1):
        depth[n] = depth[parent[n]] + 1
    lengths[used] = depth[: len(used)]
    return lengths


def _leading_bit(z: UIntArray) -> IntArray:
    """Index of the highest set bit (0 for z <= 1), exact for all 64-bit values (`symbols_of` calls
    it only where some z is 2^53 or more: below, `_split_exact` takes the bit from float64)."""
    guess = np.floor(np.log2(np.maximum(z, np.uint64(1)).astype(np.float64))).astype(np.int64)
    guess = np.clip(guess, 0, 63)
    guess -= (z >> guess.astype(np.uint64)) == 0
    guess = np.clip(guess, 0, 63)
    over = (guess < 63) & ((z >> np.minimum(guess + 1, 63).astype(np.uint64)) > 0)
    return guess + over


def decode_many(streams: list[tuple[bytes, IntArray, int]]) -> IntArray:
    """The values of several streams (bit stream, code lengths, count) concatenated, decoded with one
    set of numpy calls for all: what `decode` gives for each in turn, or MalformedBatch when any of
    them is invalid (which one is not said: the caller decodes them alone to find out).

    Why: a receiver's group of 64 batches holds 64 short streams; decoded one by one the ~30 numpy
    calls per stream, not the bits, were the cost (110 us of a 100-reading batch's 250 us)."""
    streams = [s for s in streams if s[2] > 0]
    if not streams:
        return np.zeros(0, np.int64)
    longest = MAX_CODE_LENGTH + int(EXTRA_OF.max())
    datas = [data[: (count * longest + 7) // 8] for data, _, count in streams]
    tables = [_cached_table(lengths) for _, lengths, _ in streams]
    sizes = np.array([8 * len(d) for d in datas], dtype=np.int64)
    counts = np.array([count for _, _, count in streams], dtype=np.int64)
    ends = np.cumsum(sizes)
    firsts = ends - sizes
    data = b"".join(datas)
    total = 8 * len(data)
    window = _windows(data)
    # each stream's own table, one gather per stream (a stacked table of 4,096 rows per stream
    # would cost more to build than these gathers)
    step = np.empty(total, dtype=np.int32)
    for (_, _, table_step), a, b in zip(tables, firsts.tolist(), ends.tolist(), strict=True):
        step[a:b] = table_step[window[a:b]]
    following = np.minimum(np.arange(total, dtype=np.int32) + step, total + 1)
    starts = _chains(following, firsts, counts, total)
    last = starts[np.cumsum(counts) - 1]
    # every stream's last value must end inside its own bytes (streams are monotone chains)
    if np.any(last >= ends) or np.any(following[np.minimum(last, total - 1)] > ends):
        raise MalformedBatch("a Huffman bit stream ends before all its values are decoded")
    symbols = np.empty(starts.size, dtype=np.int64)
    lengths = np.empty(starts.size, dtype=np.int64)
    bounds = np.cumsum([0, *counts.tolist()]).tolist()
    for (symbol_of, length_of, _), a, b in zip(tables, bounds[:-1], bounds[1:], strict=True):
        at = window[starts[a:b]]
        symbols[a:b], lengths[a:b] = symbol_of[at], length_of[at]
    widths = EXTRA_OF[symbols].astype(np.int64)
    return values_of(symbols, read_fields(data, starts + lengths, widths))


def read_table_cached(data: bytes, pos: int) -> tuple[IntArray, int]:
    """`read_table(data, pos, ALPHABET)`, remembered by the table's bytes (the returned lengths are
    shared: not to be modified). A gateway's columns repeat their tables from batch to batch, and
    unpacking the nibbles was 6 us of each batch's decoding in a group."""
    size, after = read_uvarint(data, pos)
    key = data[pos : after + (size + 1) // 2]
    known = _lengths_of.get(key)
    if known is not None:
        return known, pos + len(key)
    lengths, end = read_table(data, pos, ALPHABET)
    if len(_lengths_of) >= TABLES_KEPT:
        _lengths_of.clear()
    _lengths_of[key] = lengths
    return lengths, end


_lengths_of: dict[bytes, IntArray] = {}
#: decode tables by code lengths: a gateway's columns repeat their tables from batch to batch
_tables: dict[bytes, tuple[npt.NDArray[np.int32], IntArray, npt.NDArray[np.int32]]] = {}
TABLES_KEPT = 4096


def _cached_table(lengths: IntArray) -> tuple[npt.NDArray[np.int32], IntArray, npt.NDArray[np.int32]]:
    """(symbol, code length, bits to the next symbol) for every MAX_CODE_LENGTH-bit window."""
    key = lengths.tobytes()
    table = _tables.get(key)
    if table is None:
        symbol, length = _decode_table(lengths, ALPHABET)
        step = np.where(length > 0, length + EXTRA_OF[symbol], 1 << 30).astype(np.int32)
        if len(_tables) >= TABLES_KEPT:
            _tables.clear()
        table = _tables[key] = (symbol.astype(np.int32), length, step)
    return table


def _chains(following: npt.NDArray[np.int32], first: IntArray, counts: IntArray, size: int) -> IntArray:
    """For each stream, its `count` positions first, f(first), f(f(first))...; concatenated."""
    sink = np.full(2, size + 1, dtype=np.int32)
    jump = np.concatenate([following, sink])
    positions = first.astype(np.int32)[:, None]
    most = int(counts.max())
    while positions.shape[1] < most:
        positions = np.concatenate([positions, jump[positions]], axis=1)
        if positions.shape[1] < most:
            jump = jump[jump]
    keep = np.arange(positions.shape[1]) < counts[:, None]
    return positions[keep].astype(np.int64)
