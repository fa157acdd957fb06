"""Counters shared by the writer thread and the batching calls, read by statistics()."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Tally:
    """Mutable counters behind StoreStatistics; every change goes through add() under one lock."""

    committed: int = 0
    pending: int = 0
    batched: int = 0
    delivered: int = 0
    dropped: int = 0
    gaps: int = 0
    commits: int = 0
    errors: int = 0
    pruned: int = 0
    quarantined: int = 0
    outbox_rows: int = 0
    used_bytes: int = 0
    last_commit_ms: int | None = None
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, last_commit_ms: int | None = None, last_error: str | None = None, **counts: int) -> None:
        """Add to the named counters; set the last commit time or error when given."""
        with self._lock:
            for name, delta in counts.items():
                setattr(self, name, getattr(self, name) + delta)
            if last_commit_ms is not None:
                self.last_commit_ms = last_commit_ms
            if last_error is not None:
                self.last_error = last_error

    def set(self, **values: int) -> None:
        """Overwrite the named counters (values measured, not counted)."""
        with self._lock:
            for name, value in values.items():
                setattr(self, name, value)

    def snapshot(self) -> dict[str, int | str | None]:
        """A consistent copy of every counter."""
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}
