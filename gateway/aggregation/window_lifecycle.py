"""`Windower`: streaming windows per sensor, sans-I/O; the caller passes the clock (`now_ms`).

A window `[start, start + window_ms)` closes once `now_ms >= end + allowed_lateness_ms` and is
emitted with `rev` 0. A reading that arrives after its window closed, but while
`now_ms < end + max_lateness_ms`, produces a revision (`rev` + 1, the merge of everything seen for
that window) at the next `advance`; readings later than that are reported back as too late, for the
caller to upload raw and flag `Quality.LATE`. Only the merged state of windows is kept, never
readings, and closed windows are forgotten after `max_lateness_ms`, so memory is bounded by
`sensors x (max_lateness / window + open windows)` rows.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.aggregation.core import aggregate
from gateway.aggregation.merge import merge
from gateway.aggregation.window_columns import Windows, check_window_ms, concat


@dataclass(frozen=True, slots=True)
class WindowerStatistics:
    """Counters of a `Windower` (cumulative except the two *_windows gauges)."""

    #: windows with readings not yet emitted (open, or closed with late readings pending)
    open_windows: int
    #: closed windows whose state is kept for revisions (bounded by max_lateness)
    retained_windows: int
    #: windows emitted for the first time (rev 0)
    closed: int
    #: revised windows emitted (rev > 0)
    revisions: int
    #: readings reported too late for any window (uploaded raw by the caller)
    too_late: int
    #: readings accepted into windows
    readings: int


class Windower:
    """Per-series streaming windows: feed readings with `add`, collect windows with `advance`."""

    def __init__(
        self,
        *,
        window_ms: int,
        allowed_lateness_ms: int = 10_000,
        max_lateness_ms: int = 3_600_000,
    ) -> None:
        self._window_ms = check_window_ms(window_ms)
        if not 0 <= allowed_lateness_ms <= max_lateness_ms:
            raise ValueError(
                f"need 0 <= allowed_lateness_ms ({allowed_lateness_ms}) "
                f"<= max_lateness_ms ({max_lateness_ms})"
            )
        self._allowed_lateness_ms = int(allowed_lateness_ms)
        self._max_lateness_ms = int(max_lateness_ms)
        self._now_ms: int | None = None
        self._pending = Windows.empty(self._window_ms)
        self._retained: dict[int, Windows] = {}
        self._retained_starts: list[int] = []
        self._retained_rows = 0
        self._closed = self._revisions = self._too_late = self._readings = 0

    def add(
        self,
        series: NDArray[Any],
        ts_ms: NDArray[Any],
        values: NDArray[Any],
        *,
        arrived_ms: int | None = None,
    ) -> NDArray[np.bool_]:
        """Take readings (any order); return the mask of those too late for any window.

        Lateness is judged at `arrived_ms` when given (the clock the caller will `advance` to next),
        else at the clock of the last `advance`.
        """
        t = np.asarray(ts_ms)
        if t.dtype.kind not in "iu":
            raise ValueError("ts_ms must be an integer array")
        too_late = np.zeros(t.shape, np.bool_)
        now = self._now_ms
        if arrived_ms is not None:
            now = int(arrived_ms) if now is None else max(now, int(arrived_ms))
        if now is not None and t.size:
            latest_expired = now - self._window_ms - self._max_lateness_ms
            too_late = t.astype(np.int64) // self._window_ms <= latest_expired // self._window_ms
        accepted = ~too_late
        if too_late.any():
            part = aggregate(
                np.asarray(series)[accepted], t[accepted], np.asarray(values)[accepted], self._window_ms
            )
        else:
            part = aggregate(series, t, values, self._window_ms)
        if len(part):
            self._pending = merge(self._pending, part)
        self._too_late += int(too_late.sum())
        self._readings += int(accepted.sum())
        return too_late

    def advance(self, now_ms: int) -> Windows:
        """Close the windows due at now_ms (rev 0) and emit revisions for late readings."""
        now = int(now_ms) if self._now_ms is None else max(self._now_ms, int(now_ms))
        self._now_ms = now
        due = self._pending.window_start <= now - self._window_ms - self._allowed_lateness_ms
        emitted = Windows.empty(self._window_ms)
        if due.any():
            emitted = self._emit(self._pending.take(due))
            self._pending = self._pending.take(~due)
        self._forget_before(now)
        return emitted

    def resume(self, now_ms: int, revisions: Mapping[tuple[int, int], int]) -> None:
        """Catch up after a restart, once the readings uploaded before it were replayed with `add`.

        Windows due at `now_ms` (the clock of the last upload) were uploaded already: they are
        retained, not emitted, and carry the revision last uploaded, `revisions[(series,
        window_start)]` (0 when absent). The counters start from zero afterwards.
        """
        self.advance(now_ms)
        for start, state in self._retained.items():
            revs = [revisions.get((series, start), 0) for series in state.series.tolist()]
            self._retained[start] = state.with_rev(np.array(revs, np.int32))
        self._closed = self._revisions = self._too_late = self._readings = 0

    def statistics(self) -> WindowerStatistics:
        """Counters for the CLI and metrics."""
        return WindowerStatistics(
            open_windows=len(self._pending),
            retained_windows=self._retained_rows,
            closed=self._closed,
            revisions=self._revisions,
            too_late=self._too_late,
            readings=self._readings,
        )

    def _emit(self, due: Windows) -> Windows:
        """Merge due rows into the retained state, window start by window start; return them."""
        parts = []
        for start in np.unique(due.window_start).tolist():
            part = due.take(due.window_start == start)
            retained = self._retained.get(start)
            if retained is None:
                state = part.with_rev(np.zeros(len(part), np.int32))
                heapq.heappush(self._retained_starts, start)
            else:
                self._retained_rows -= len(retained)
                state = merge(retained, part.with_rev(_next_revs(retained, part)))
            self._retained[start] = state
            self._retained_rows += len(state)
            parts.append(state.take(np.searchsorted(state.series, part.series)))
        emitted = concat(parts, self._window_ms)
        emitted = emitted.take(np.lexsort((emitted.window_start, emitted.series)))
        first = int(np.count_nonzero(emitted.rev == 0))
        self._closed += first
        self._revisions += len(emitted) - first
        return emitted

    def _forget_before(self, now: int) -> None:
        """Drop the state of windows that can no longer be revised."""
        horizon = now - self._window_ms - self._max_lateness_ms
        while self._retained_starts and self._retained_starts[0] <= horizon:
            start = heapq.heappop(self._retained_starts)
            self._retained_rows -= len(self._retained.pop(start))


def _next_revs(retained: Windows, part: Windows) -> NDArray[np.int32]:
    """Revision numbers for part's rows: one more than the retained row, 0 for a new series."""
    at = np.minimum(np.searchsorted(retained.series, part.series), len(retained) - 1)
    known = retained.series[at] == part.series
    return np.where(known, retained.rev[at] + 1, 0).astype(np.int32)
