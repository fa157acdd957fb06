"""Supervised long-lived tasks: a failing task restarts with capped backoff and never takes others down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from kernel.backoff import Backoff
from kernel.retry import RetryEvents, RetrySeries

log = structlog.get_logger(__name__)

#: a run that lasted this long counts as recovered: the backoff starts from the beginning again
HEALTHY_AFTER_S = 10.0
#: the names predate the dotted ones (docs/logs.md): operators' filters and the integration tests match them
TASK_EVENTS = RetryEvents("task.failed", "task.failed_again", "task.recovered")


@dataclass(frozen=True)
class TaskStatistics:
    """What the supervisor knows about one task."""

    name: str
    restarts: int
    failing: bool
    last_error: str
    #: wall clock (ms UTC) of the last failure, None before the first
    last_error_ms: int | None = None


def _describe(exc: BaseException) -> str:
    """One line for an exception, unwrapping the groups TaskGroups raise."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


class Supervised:
    """Runs `factory()` forever; logs WARNING on the first failure of a series, DEBUG after, INFO on recovery."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], Awaitable[None]],
        backoff: Backoff | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._wall = wall_clock
        self._last_error_ms: int | None = None
        #: set by `retry_now`: the backoff wait ends early (`gateway flush` reconnecting the uplink)
        self._retry = asyncio.Event()
        self._factory = factory
        self._series = RetrySeries(log, TASK_EVENTS, backoff or Backoff(initial_s=0.5, cap_s=30.0), task=name)
        self._restarts = 0
        self._last_error = ""

    async def run(self) -> None:
        """Loop until cancelled; a return of the task is treated like a failure (drivers run forever)."""
        loop = asyncio.get_running_loop()
        while True:
            healthy = loop.call_later(HEALTHY_AFTER_S, self._healthy)
            try:
                await self._factory()
                error = "task returned"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the whole point: one task's failure stays here
                error = _describe(exc)
            finally:
                healthy.cancel()
            self._restarts += 1
            self._last_error = error
            self._last_error_ms = int(self._wall() * 1000)
            delay = self._series.failed(error)
            self._retry.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._retry.wait()
            except TimeoutError:
                pass

    def retry_now(self) -> bool:
        """End the backoff wait of a failed task now; False when it is not waiting."""
        waiting = self._series.failing and not self._retry.is_set()
        self._retry.set()
        return waiting

    def _healthy(self) -> None:
        """Called once a run has lasted HEALTHY_AFTER_S: the failure series is over."""
        self._series.succeeded(restarts=self._restarts)

    def statistics(self) -> TaskStatistics:
        """Counters for status and metrics."""
        return TaskStatistics(
            self.name, self._restarts, self._series.failing, self._last_error, self._last_error_ms
        )
