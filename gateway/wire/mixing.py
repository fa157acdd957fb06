"""Method 8 (format version 6): an integer column coded by the compiled context-mixing coder.

The coder (`ctxmix`, docs/wire-format.md section 4.1) predicts each integer
bit by bit from several contexts at once (the integers before it, the same hour of the days before
it, the magnitude of the last steps) and mixes their predictions, which neither PPMd nor brotli,
each one model over a byte stream, can do: on the value steps of the 17 hourly series it cut
4-19 % off version 5's best column (docs/wire-format.md, section 8).

The column is the method byte, `uvarint count` (left out in version 6, where the count is implied),
`uvarint 2 P + h` and `uvarint M`, then the coder's bytes to the end of the column: P is the
series' readings per day (0: none), h says whether the integers are steps (0) or levels (1), M is
the circle of circular steps (0: none). They travel with the column, although key 10 and the
timestamps imply them, so that the column decodes alone like every other int-column (2 bytes of
the 2,000-3,500 an hourly series' column takes).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.wire import ctxmix, huffman, intcol
from kernel.errors import MalformedBatch, UnsupportedVersion

METHOD_CONTEXT_MIXING = intcol.METHOD_CONTEXT_MIXING
#: the largest day period P the coder takes (section 4.1): a day of one-minute readings; a series
#: read more often is coded without one (P = 0)
MAX_PERIOD = 1440
#: the largest circle M the coder takes (section 4.1); the writer's circles stay within 2^16 (3.2.8)
MAX_MODULUS = 1 << 32
STEPS, LEVELS = 0, 1

IntArray = npt.NDArray[np.int64]


class ImpliedStepColumn(bytes):
    """A value-step column of a version-6 body, as `implied.restore_counts` hands it on: the only
    int-column in which method 8 may stand. A column read from CBOR is plain `bytes`, so method 8
    in a version-5 body, or in any other column, is refused without the decoder knowing the version."""


def pack(ints: IntArray, period: int, history: int, modulus: int) -> bytes:
    """The method-8 column of `ints` (with its count, as every counted method before version 6 drops it)."""
    coded = ctxmix.encode(ints, _checked(period, history, modulus, ValueError))
    head = bytes([METHOD_CONTEXT_MIXING]) + huffman.uvarint(ints.size)
    return head + huffman.uvarint(2 * period + history) + huffman.uvarint(modulus) + coded


def unpack(data: bytes, count: int, pos: int) -> IntArray:
    """The `count` integers of a method-8 column whose count ends at `pos`; MalformedBatch for a
    column that is not one (or that stands outside a version-6 value-step column)."""
    if not isinstance(data, ImpliedStepColumn):
        raise MalformedBatch("method 8 (context mixing) stands only in the value steps of a version-6 body")
    both, pos = huffman.read_uvarint(data, pos)
    modulus, pos = huffman.read_uvarint(data, pos)
    params = _checked(both >> 1, both & 1, modulus, MalformedBatch)
    try:
        return ctxmix.decode(data[pos:], count, params)
    except ctxmix.CoderUnavailable as exc:
        # the batch is fine, this install is not: like a version it cannot read, a receiver keeps it in
        # the retryable quarantine (not among the rejected) until the library is back and it is retried
        raise UnsupportedVersion(f"method 8 (context mixing) cannot be read here: {exc}") from exc


def _checked(
    period: int, history: int, modulus: int, error: type[ValueError] | type[MalformedBatch]
) -> list[int]:
    """[P, h, M] when each is within the format's bounds; `error` otherwise."""
    if not (period == 0 or 2 <= period <= MAX_PERIOD):
        raise error(f"context-mixing period must be 0 or 2 to {MAX_PERIOD}, got {period}")
    if history not in (STEPS, LEVELS):
        raise error(f"context-mixing history must be 0 (steps) or 1 (levels), got {history}")
    if not (modulus == 0 or 2 <= modulus <= MAX_MODULUS):
        raise error(f"context-mixing circle must be 0 or 2 to {MAX_MODULUS}, got {modulus}")
    return [period, history, modulus]
