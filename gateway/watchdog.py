"""The agent as a systemd notify service: READY=1, STATUS=, WATCHDOG=1 only while it makes progress,
EXTEND_TIMEOUT_USEC during long start-up work.

gateway/sdnotify.py speaks the protocol, gateway/liveness.py judges progress; this module is the
small piece of asyncio between them that the agent calls (`starting`, `ready`, `watch`, `stopping`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import structlog

from buffer import Store, StoreStatistics
from gateway.liveness import Liveness, Progress
from gateway.sdnotify import Notifier, WatchdogSetting, notification, watchdog_setting
from kernel.errors import StorageError

log = structlog.get_logger(__name__)

#: liveness is judged this many times per WatchdogSec=; sd_watchdog_enabled(3) asks for at least 2
TICKS_PER_INTERVAL = 4
#: a part busy without progress for this share of WatchdogSec= is stuck: with WatchdogSec=30 a
#: hang is noticed after 15 s and systemd acts 30 s after the last WATCHDOG=1, i.e. within 45 s
STALL_SHARE = 0.5
#: without a watchdog, STATUS= is refreshed this often
STATUS_EVERY_S = 10.0
#: each EXTEND_TIMEOUT_USEC notice grants this much more start-up time (sent every half of it)
EXTEND_STEP_S = 30.0
#: start-up work is extended at most this long; a buffer integrity check of 1 GB on a Pi 4's SD
#: card reads the whole file (~45 MB/s measured with dd: ~25 s), so an hour means something hangs
MAX_START_S = 3600.0


def status_line(readings_per_min: float, store: StoreStatistics | None, uplink_state: str) -> str:
    """One line for `systemctl status`: readings/min, backlog, uplink state."""
    if store is None:
        backlog = "backlog unknown"
    else:
        backlog = f"backlog {store.outbox_rows} batches + {store.pending} unsealed readings"
    return f"{readings_per_min:.0f} readings/min, {backlog}, uplink {uplink_state}"


class ReadingRate:
    """Readings per minute between two observations of a running total (time passed in)."""

    def __init__(self) -> None:
        self._last: tuple[int, float] | None = None

    def observe(self, total: int, now: float) -> float:
        """The rate since the previous observation (0 for the first)."""
        last, self._last = self._last, (total, now)
        if last is None or now <= last[1]:
            return 0.0
        return (total - last[0]) * 60.0 / (now - last[1])


async def probe_writer(store: Store, progress: Progress) -> None:
    """Ask the writer thread to commit what is queued; returns once it has answered."""
    with progress.working(), contextlib.suppress(StorageError):
        await store.flush()  # a storage error is an answer too: the thread is alive


class ServiceWatch:
    """What the agent tells systemd; a no-op outside a notify unit."""

    def __init__(
        self,
        notifier: Notifier,
        watchdog: WatchdogSetting | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._watchdog = watchdog
        self._clock = clock
        #: judgements made so far, and which parts the last one found stuck (for status and tests)
        self.ticks = 0
        self.stuck: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls) -> ServiceWatch:
        """As systemd started us: $NOTIFY_SOCKET, $WATCHDOG_USEC, $WATCHDOG_PID."""
        return cls(Notifier.from_environment(), watchdog_setting(os.environ, os.getpid()))

    @contextlib.asynccontextmanager
    async def starting(self, what: str) -> AsyncIterator[None]:
        """Around long start-up work (migration, integrity check, quarantine): keep extending the timeout."""
        if not self._notifier.enabled:
            yield
            return
        self._notifier.send(notification(status=what))
        extender = asyncio.create_task(self._extend())
        try:
            yield
        finally:
            extender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await extender

    async def _extend(self) -> None:
        usec = int(EXTEND_STEP_S * 1_000_000)
        for _ in range(int(MAX_START_S / (EXTEND_STEP_S / 2))):
            # WATCHDOG=1 too: the watchdog may already run while the start-up work does
            self._notifier.send(notification(extend_timeout_usec=usec, watchdog=self._watchdog is not None))
            await asyncio.sleep(EXTEND_STEP_S / 2)

    def ready(self, status: str) -> None:
        """The store is open and the drivers and the uplink are running."""
        self._notifier.send(notification(ready=True, status=status))

    def stopping(self) -> None:
        """A clean stop has begun."""
        self._notifier.send(notification(stopping=True, status="stopping"))

    def close(self) -> None:
        """The agent has stopped: release the socket."""
        self._notifier.close()

    async def watch(
        self,
        parts: dict[str, Progress],
        describe: Callable[[], str],
        probe: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        """Forever: judge progress, send WATCHDOG=1 only when every part progresses, refresh STATUS=.

        `probe` is started again whenever the previous one finished; it asks a thread to show
        that it is alive (the writer's flush).
        """
        if not self._notifier.enabled:
            return
        period = STATUS_EVERY_S
        liveness = None
        if self._watchdog is not None:
            period = self._watchdog.interval_s / TICKS_PER_INTERVAL
            liveness = Liveness(parts, stall_s=self._watchdog.interval_s * STALL_SHARE)
        probing: asyncio.Task[None] | None = None
        try:
            while True:
                if probing is None or probing.done():
                    probing = asyncio.create_task(probe())
                await asyncio.sleep(period)
                self._tick(liveness, describe())
        finally:
            if probing is not None:
                probing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probing

    def _tick(self, liveness: Liveness | None, status: str) -> None:
        self.ticks += 1
        if liveness is None:
            self._notifier.send(notification(status=status))
            return
        stuck = liveness.judge(self._clock()).stuck
        if stuck != self.stuck:
            if stuck:
                log.error("no progress: withholding the watchdog ping", stuck=list(stuck))
            else:
                log.info("progress again", was_stuck=list(self.stuck))
        self.stuck = stuck
        if stuck:
            self._notifier.send(notification(status=f"STUCK: {', '.join(stuck)}; {status}"))
        else:
            self._notifier.send(notification(watchdog=True, status=status))
