"""What the writer tells the operator in the log: storage trouble and data given up.

Each kind of trouble ("storage error", "disk full") is a kernel retry series (kernel/retry.py: WARNING on
the first failure, DEBUG for the repeats, INFO when it recovers). A disk that is just full flips between
failing and succeeding commits, so a new series of the same kind within LOSS_REPORT_EVERY_S of the last
WARNING is reported quietly (DEBUG). Data given up under the quota policy is normal operation during a long
outage, so it is summarised at most once per LOSS_REPORT_EVERY_S instead of once per commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from kernel.backoff import Backoff
from kernel.retry import RetryEvents, RetrySeries

log = structlog.get_logger("buffer")

LOSS_REPORT_EVERY_S = 600.0
#: the kinds of trouble a group commit has; the event names are stable (docs/logs.md, tests match them)
STORAGE_ERROR = "storage error"
DISK_FULL = "disk full"


def _events(kind: str) -> RetryEvents:
    """`buffer.storage_error.failed`, `buffer.disk_full.recovered`, ... (docs/logs.md)."""
    subject = f"buffer.{kind.replace(' ', '_')}"
    return RetryEvents(f"{subject}.failed", f"{subject}.failed_again", f"{subject}.recovered")


class StorageCondition:
    """Turns the writer's outcomes into a few canonical log lines (writer thread only).

    `backoff` paces the writer's retries after a storage error (`failed` returns its next delay); a full
    disk is handled by the quota policy at the next commit, so its series waits 0 s.
    """

    def __init__(self, policy: str, backoff: Backoff, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._series = {
            STORAGE_ERROR: RetrySeries(log, _events(STORAGE_ERROR), backoff),
            DISK_FULL: RetrySeries(log, _events(DISK_FULL), Backoff(initial_s=0.0, jitter=0.0)),
        }
        self._next_warning: dict[str, float] = {}
        self._lost = 0
        self._lost_reasons: set[str] = set()
        self._next_loss_report = 0.0

    def failed(self, kind: str, error: BaseException) -> float:
        """A group commit failed (kind: STORAGE_ERROR or DISK_FULL); the delay before the next attempt."""
        series = self._series[kind]
        now = self._clock()
        quiet = not series.failing and now < self._next_warning.get(kind, 0.0)
        delay = series.failed(error, quiet=quiet)
        if series.warned and not quiet and series.failures == 1:
            self._next_warning[kind] = now + LOSS_REPORT_EVERY_S
        return delay

    def committed(self) -> None:
        """A group commit succeeded at the first attempt: every series of trouble ends."""
        for series in self._series.values():
            if series.failing:
                series.succeeded()

    def lost(self, readings: int, reason: str) -> None:
        """`readings` were given up (each one counted by a gap record)."""
        if readings <= 0:
            return
        self._lost += readings
        self._lost_reasons.add(reason)
        now = self._clock()
        if now < self._next_loss_report:
            return
        log.warning(
            "buffer.readings_given_up",
            readings=self._lost,
            reasons=sorted(self._lost_reasons),
            policy=self._policy,
        )
        self._lost = 0
        self._lost_reasons = set()
        self._next_loss_report = now + LOSS_REPORT_EVERY_S
