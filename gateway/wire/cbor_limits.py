"""A linear scan of a CBOR item's heads, refusing bodies whose decoding would cost more than a batch can.

cbor2 builds a Python object per item: a 16 MB body of empty maps became 16 M dicts, 1.3 GB of RSS,
from a signed batch under 1 KB (zstd compresses it 16,000:1). This scan reads only the heads,
allocates nothing per item, and stops at the first item beyond the limits, so what reaches cbor2 is
at most MAX_ITEMS objects (about 80 bytes each: 16 MB) nested at most MAX_DEPTH deep.
"""

from __future__ import annotations

from kernel.errors import MalformedBatch

#: items in one body: a batch of 1,000 series with 10,000 gaps and events has about 70,000
MAX_ITEMS = 200_000
#: nesting depth: the body format nests 4 deep (body map, readings map, list, list)
MAX_DEPTH = 16
_WIDTH = {24: 1, 25: 2, 26: 4, 27: 8}


def check_items(data: bytes, *, max_items: int = MAX_ITEMS, max_depth: int = MAX_DEPTH) -> None:
    """MalformedBatch unless `data` starts with one definite-length CBOR item within the limits."""
    pos, end, items = 0, len(data), 0
    remaining = [1]  # items still to read at each open nesting level
    while remaining:
        if remaining[-1] == 0:
            remaining.pop()
            continue
        remaining[-1] -= 1
        if pos >= end:
            raise MalformedBatch("body is truncated")
        major, info = data[pos] >> 5, data[pos] & 0x1F
        pos += 1
        if info < 24:
            argument = info
        elif info in _WIDTH:
            width = _WIDTH[info]
            argument = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        else:
            raise MalformedBatch("body uses indefinite lengths or reserved CBOR heads")
        items += 1
        if items > max_items:
            raise MalformedBatch(f"body holds more than {max_items} CBOR items")
        if major in (2, 3):  # byte and text strings: skip their content
            pos += argument
        elif major in (4, 5, 6):  # arrays, maps (key and value each) and a tag's one item
            remaining.append(argument * 2 if major == 5 else 1 if major == 6 else argument)
            if len(remaining) > max_depth + 1:
                raise MalformedBatch(f"body nests deeper than {max_depth}")
    if pos > end:
        raise MalformedBatch("body is truncated")
