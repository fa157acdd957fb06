"""The sweeps over the readings, split between threads: numpy's scatters release the GIL.

Each thread sweeps a contiguous span of whole chunks into accumulators of its own and the caller
combines them (counts and sums add, extremes take the extreme), so the result does not depend on
scheduling. A backlog of days aggregates on every core of the Pi; small inputs (the agent's
streaming path) stay on the calling thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: below this many readings one thread is faster than handing the work out
PARALLEL_MIN = 1 << 20
#: threads used for large inputs: the cores this process may run on, at most 4 (a Pi 4)
WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))

#: threads start on first use; none run while there is nothing to do
_POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="aggregate")


def spans(n: int, chunk: int, workers: int = WORKERS) -> list[range]:
    """Contiguous spans of whole chunks covering 0..n, one per worker (one for small inputs)."""
    parts = 1 if n < PARALLEL_MIN else workers
    per = max(chunk, -(-n // parts // chunk) * chunk)
    return [range(lo, min(lo + per, n)) for lo in range(0, n, per)] or [range(0)]


def map_spans(work: Callable[[range], T], n: int, chunk: int) -> list[T]:
    """`work(span)` for every span of `spans(n, chunk)`, in span order."""
    parts = spans(n, chunk, WORKERS)
    if len(parts) == 1:
        return [work(parts[0])]
    return list(_POOL.map(work, parts))
