"""Wall-clock milliseconds, the one unit of time in storage and on the wire (architecture.md, "Time")."""

from __future__ import annotations

import time


def now_ms() -> int:
    """UTC milliseconds since the epoch, read from the wall clock (not monotonic: it may step)."""
    return time.time_ns() // 1_000_000
