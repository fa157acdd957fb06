"""The store-and-forward buffer: SQLite in WAL mode, group commit off the event loop, an outbox."""

from buffer.batching import StalePending
from buffer.records import (
    GapRecord,
    OutboxEntry,
    PendingSlice,
    SeriesKey,
    StoreOptions,
    StoreStatistics,
)
from buffer.store import Store

__all__ = [
    "GapRecord",
    "OutboxEntry",
    "PendingSlice",
    "SeriesKey",
    "StalePending",
    "Store",
    "StoreOptions",
    "StoreStatistics",
]
