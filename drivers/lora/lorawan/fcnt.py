"""32-bit frame-counter inference from the 16 bits a LoRaWAN 1.0 device sends.

The device keeps a 32-bit FCntUp and sends its low 16 bits. The network takes the nearest
counter after the last accepted one, crossing a 16-bit rollover when the low half wrapped.
Advances larger than MAX_FCNT_GAP (the LoRaWAN 1.0.x value, section 4.3.1.5) are taken as
an old frame instead: the counter is placed behind the last one and the frame is a replay.
"""

from __future__ import annotations

MAX_FCNT_GAP = 16384


def infer_fcnt32(last: int | None, fcnt16: int) -> int:
    """The full counter for `fcnt16`, given the last accepted 32-bit counter (None: first frame).

    The result is <= `last` for a repeated or old frame; callers treat that as a replay.
    """
    if last is None:
        return fcnt16 & 0xFFFF
    ahead = (fcnt16 - last) & 0xFFFF
    if 0 < ahead <= MAX_FCNT_GAP:
        return (last + ahead) & 0xFFFFFFFF
    behind = (last - fcnt16) & 0xFFFF
    return max(0, last - behind)


def is_fresh(last: int | None, fcnt32: int) -> bool:
    """True when `fcnt32` comes after `last` (any counter is fresh for a new session)."""
    return last is None or fcnt32 > last
