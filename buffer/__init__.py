"""The store-and-forward buffer: SQLite in WAL mode, group commit off the event loop, an outbox."""

from buffer.batching import StalePending
from buffer.records import (
    BatchedReadings,
    GapRecord,
    OutboxEntry,
    PendingSlice,
    SeriesKey,
    StoreOptions,
    StoreStatistics,
    TrafficDay,
    WindowMark,
    WindowProgress,
    WindowState,
)
from buffer.store import Store

__all__ = [
    "BatchedReadings",
    "GapRecord",
    "OutboxEntry",
    "PendingSlice",
    "SeriesKey",
    "StalePending",
    "Store",
    "StoreOptions",
    "StoreStatistics",
    "TrafficDay",
    "WindowMark",
    "WindowProgress",
    "WindowState",
]
