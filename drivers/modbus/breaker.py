"""Per-slave circuit breaker (pure; the caller passes monotonic time).

A slave that fails `dead_after` polls in a row is *dead*: it is no longer polled but probed
with a single request (no retries) at a slow, backing-off rate, so it costs the bus at most one
timeout per probe interval and never slows the other slaves. One answer makes it alive again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from kernel.backoff import Backoff


class SlaveState(enum.StrEnum):
    """What the breaker thinks of a slave."""

    ALIVE = "alive"
    DEAD = "dead"


@dataclass
class SlaveBreaker:
    """Counts failed polls of one slave and decides when it may be asked again."""

    dead_after: int = 3
    probe: Backoff = field(default_factory=lambda: Backoff(initial_s=10.0, cap_s=300.0))
    state: SlaveState = SlaveState.ALIVE
    failures: int = 0
    probe_at: float = 0.0

    def may_poll(self, now: float) -> bool:
        """Alive slaves always; dead slaves only when their probe is due."""
        return self.state is SlaveState.ALIVE or now >= self.probe_at

    @property
    def retries_allowed(self) -> bool:
        """A probe of a dead slave is one request: retrying a dead slave wastes the bus."""
        return self.state is SlaveState.ALIVE

    def succeeded(self) -> SlaveState | None:
        """Record an answer; returns the new state when it changed."""
        self.failures = 0
        self.probe.reset()
        if self.state is SlaveState.DEAD:
            self.state = SlaveState.ALIVE
            return self.state
        return None

    def failed(self, now: float) -> SlaveState | None:
        """Record a poll without answer; returns the new state when it changed."""
        self.failures += 1
        if self.state is SlaveState.DEAD:
            self.probe_at = now + self.probe.next_delay()
            return None
        if self.failures >= self.dead_after:
            self.state = SlaveState.DEAD
            self.probe_at = now + self.probe.next_delay()
            return self.state
        return None
