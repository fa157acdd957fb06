"""One series of failures of one reconnecting thing: the backoff and the three log lines, written once.

A port that vanishes, a broker that is down, a task that keeps failing: the first failure of a series is a
WARNING (an operator should see it), the repeats are DEBUG (a day-long outage with a 30 s cap is ~2 900
retries, which must not fill the journal), and the first success after failures is one INFO. The event
names are stable (`<subject>.failed`, `<subject>.failed_again`, `<subject>.recovered`; docs/logs.md lists
them), so a journald filter or an alert can match them. Like aioesphomeapi's ReconnectLogic, but sans-I/O:
the caller sleeps, this only says how long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kernel.backoff import Backoff


class EventLog(Protocol):
    """The part of a structlog logger a retry series uses."""

    def warning(self, event: str, **facts: Any) -> Any: ...
    def info(self, event: str, **facts: Any) -> Any: ...
    def debug(self, event: str, **facts: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class RetryEvents:
    """The three event names of a series."""

    failed: str
    failed_again: str
    recovered: str

    @classmethod
    def dotted(cls, subject: str) -> RetryEvents:
        return cls(f"{subject}.failed", f"{subject}.failed_again", f"{subject}.recovered")


class RetrySeries:
    """Call `failed` after each failure (it returns the delay before the next attempt) and `succeeded`
    after each success; the backoff restarts from its beginning after a success."""

    def __init__(
        self, log: EventLog, events: RetryEvents | str, backoff: Backoff | None = None, **context: Any
    ) -> None:
        self._log = log
        self.events = RetryEvents.dotted(events) if isinstance(events, str) else events
        self.backoff = backoff or Backoff()
        self._context = context
        self.failing = False  # a failure was reported and no success since
        self.warned = False  # this series' first failure went out at WARNING (so its recovery is news)

    @property
    def failures(self) -> int:
        """Failures in the current series (0 when the last attempt succeeded)."""
        return self.backoff.failures

    def failed(self, error: object, *, quiet: bool = False, **facts: Any) -> float:
        """Report one failure (WARNING first, DEBUG after) and return the delay before the next attempt.

        `quiet`: the caller told the operator about this kind of trouble a moment ago (a disk that is
        just full flips between failing and succeeding), so even a first failure is DEBUG, and so is
        its recovery."""
        delay = self.backoff.next_delay()
        first = not self.failing
        report = self._log.warning if first and not quiet else self._log.debug
        event = self.events.failed if first else self.events.failed_again
        report(event, **self._context, error=str(error), retry_in_s=round(delay, 2), **facts)
        self.warned = self.warned or (first and not quiet)
        self.failing = True
        return delay

    def succeeded(self, *, after_loss: bool = False, **facts: Any) -> bool:
        """End the series; one INFO when it had failures, or when the caller reported a loss itself
        (`after_loss`: a bus that dropped and reopened at once). Returns whether this was a recovery."""
        recovered = self.failing or after_loss
        if self.warned or after_loss:
            self._log.info(self.events.recovered, **self._context, **facts)
        elif recovered:
            self._log.debug(self.events.recovered, **self._context, **facts)
        self.failing = self.warned = False
        self.backoff.reset()
        return recovered
