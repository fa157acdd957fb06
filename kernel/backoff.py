"""The one capped exponential backoff used by every reconnecting thing (ports, buses, broker)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of initial * factor**n, capped, with +-jitter; reset() after a success."""

    initial_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1
    failures: int = field(default=0, init=False)

    def next_delay(self) -> float:
        """Return the delay before the next attempt and count one more failure."""
        delay = min(self.cap_s, self.initial_s * self.factor**self.failures)
        self.failures += 1
        if self.jitter:
            delay *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, delay)

    def reset(self) -> None:
        """Forget past failures after a success."""
        self.failures = 0
