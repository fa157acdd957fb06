"""What the writer tells the operator in the log: storage trouble and data given up.

House rule for retry series: WARNING on the first failure, DEBUG for the repeats, INFO when it
recovers. Data given up under the quota policy is normal operation during a long outage, so it
is summarised at most once per LOSS_REPORT_EVERY_S instead of once per commit.
"""

from __future__ import annotations

import time

import structlog

log = structlog.get_logger("buffer")

LOSS_REPORT_EVERY_S = 600.0


class StorageCondition:
    """Turns the writer's outcomes into a few canonical log lines (writer thread only)."""

    def __init__(self, policy: str) -> None:
        self._policy = policy
        self._trouble: str | None = None
        self._warned = False  # this series of failures was reported at WARNING
        self._next_warning: dict[str, float] = {}
        self._lost = 0
        self._lost_reasons: set[str] = set()
        self._next_loss_report = 0.0

    def failed(self, kind: str, error: BaseException) -> None:
        """A group commit failed (kind: "storage error" or "disk full").

        A disk that is just full flips between failing and succeeding commits, so a new series of
        the same kind is reported at WARNING at most once per LOSS_REPORT_EVERY_S.
        """
        now = time.monotonic()
        if self._trouble is None and now >= self._next_warning.get(kind, 0.0):
            log.warning(f"buffer: {kind}, readings stay queued or become gap records", error=str(error))
            self._next_warning[kind] = now + LOSS_REPORT_EVERY_S
            self._warned = True
        else:
            log.debug(f"buffer: {kind} again", error=str(error))
        self._trouble = kind

    def committed(self) -> None:
        """A group commit succeeded at the first attempt."""
        if self._trouble is not None and self._warned:
            log.info(f"buffer: commits succeed again after {self._trouble}")
        self._trouble = None
        self._warned = False

    def lost(self, readings: int, reason: str) -> None:
        """`readings` were given up (each one counted by a gap record)."""
        if readings <= 0:
            return
        self._lost += readings
        self._lost_reasons.add(reason)
        now = time.monotonic()
        if now < self._next_loss_report:
            return
        log.warning(
            "buffer: readings given up, uploaded as gap records",
            readings=self._lost,
            reasons=sorted(self._lost_reasons),
            policy=self._policy,
        )
        self._lost = 0
        self._lost_reasons = set()
        self._next_loss_report = now + LOSS_REPORT_EVERY_S
