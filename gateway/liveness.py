"""Is the agent making progress? A pure judge over heartbeats, for systemd's watchdog.

A timer that pings systemd proves only that the event loop runs. The agent's work happens in three
places: the event loop, the buffer's writer thread and the batcher (which seals in a worker
thread). Each reports a `Progress`: a counter bumped whenever a piece of work finishes and whether
work is under way. A part is stuck when it has been busy without finishing anything for `stall_s`;
an idle part (nothing to do) is never stuck. The event loop needs no heartbeat: the judge itself
runs on it, so a blocked loop sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass


class Progress:
    """One part's heartbeat: `finished` grows with each piece of work done, `busy` while one runs."""

    def __init__(self) -> None:
        self.finished = 0
        self.busy = False

    @contextmanager
    def working(self) -> Iterator[None]:
        """Mark the block as work under way; leaving it (normally or by an error) counts as done."""
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
            self.finished += 1

    def beat(self) -> None:
        """A step of a long piece of work finished (e.g. one batch of a long backlog)."""
        self.finished += 1


@dataclass(frozen=True)
class Verdict:
    """The judge's answer at one moment."""

    stuck: tuple[str, ...]

    @property
    def alive(self) -> bool:
        """Every part progressed or had nothing to do."""
        return not self.stuck


class Liveness:
    """Judges named `Progress` heartbeats against a stall limit; time is passed in (monotonic s)."""

    def __init__(self, parts: Mapping[str, Progress], stall_s: float) -> None:
        if stall_s <= 0:
            raise ValueError("stall_s must be positive")
        self._parts = dict(parts)
        self._stall_s = stall_s
        #: per part: the counter last seen and since when it has not moved while busy
        self._seen: dict[str, tuple[int, float]] = {}

    def judge(self, now: float) -> Verdict:
        """Which parts have been busy without finishing anything for at least `stall_s`."""
        stuck = []
        for name, progress in self._parts.items():
            seen = self._seen.get(name)
            if seen is None or seen[0] != progress.finished or not progress.busy:
                self._seen[name] = (progress.finished, now)
            elif now - seen[1] >= self._stall_s:
                stuck.append(name)
        return Verdict(tuple(stuck))
