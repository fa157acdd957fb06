"""Windowed statistics per series: pure numpy over whole columns, exact, mergeable, no I/O.

`aggregate` turns readings into `Windows`; `merge` combines partial windows as if their readings had
been aggregated together (late data, restarts, chunked backlogs); `Windower` is the streaming,
sans-I/O state machine the agent feeds (the caller passes the clock).
"""

from __future__ import annotations

from gateway.aggregation.core import aggregate
from gateway.aggregation.merge import merge
from gateway.aggregation.window_columns import MAX_WINDOW_MS, Windows
from gateway.aggregation.window_lifecycle import Windower, WindowerStatistics

__all__ = ["MAX_WINDOW_MS", "Windower", "WindowerStatistics", "Windows", "aggregate", "merge"]
