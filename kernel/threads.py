"""Work in a worker thread that a cancellation cannot leave running behind its caller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` in a worker thread, as `asyncio.to_thread`, except that a
    cancellation waits for the thread to return before it propagates.

    A thread cannot be stopped. With `asyncio.to_thread`, a cancelled caller goes on while its thread
    still works: the batcher left its lock with an encode running, and the agent's stop sealed again
    at once, so two threads encoded and sealed the same readings (shared zstd contexts crashed the
    process; the store would have refused the second seal as stale). Cancelled again while it waits,
    it goes on waiting. What the thread returns or raises after a cancellation is dropped: the caller
    is cancelled.
    """
    work = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({work})
        if not work.cancelled():
            work.exception()  # retrieved: not reported as "never retrieved" when collected
        raise
