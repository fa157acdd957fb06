"""The values the store hands out and takes in: options, pending slices, outbox entries, statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from kernel.model import HealthEvent

SeriesKey = tuple[str, str, str]
"""(sensor, quantity, unit): what makes a series distinct in the store."""


@dataclass(frozen=True)
class StoreOptions:
    """Knobs of the store; defaults follow docs/buffer.md."""

    #: longest time a submitted reading waits before its group commit
    commit_interval_s: float = 1.0
    #: a group commit holds at most this many readings
    max_rows_per_commit: int = 10_000
    #: quota for the database's used pages (readings, outbox, gaps, events)
    max_bytes: int = 1 << 30
    #: free space the store leaves on the filesystem
    min_free_bytes: int = 64 << 20
    #: what to give up when the quota or the disk is full
    policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    #: raw readings already batched are kept this long for technicians, then pruned
    keep_raw_s: float = 86_400.0
    #: readings waiting for a commit beyond this many are turned into gap records (storage down)
    max_queued_rows: int = 1_000_000


@dataclass(frozen=True)
class GapRecord:
    """A range of a series the store had to give up (or never got), uploaded so the backend can show why."""

    sensor: str
    quantity: str
    unit: str
    from_ms: int
    to_ms: int
    count: int
    reason: str


@dataclass(frozen=True)
class StoredReadings:
    """Committed readings as columns; `series` indexes `series_keys`."""

    series_keys: tuple[SeriesKey, ...]
    series: npt.NDArray[np.int32]
    ts_ms: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint16]

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])


@dataclass(frozen=True)
class PendingSlice(StoredReadings):
    """Committed readings not yet in any batch, plus unbatched gaps and events."""

    gaps: tuple[GapRecord, ...]
    events: tuple[HealthEvent, ...]
    #: opaque to callers: what seal_batch needs to mark exactly these rows as batched
    token: object


@dataclass(frozen=True)
class BatchedReadings(StoredReadings):
    """Committed readings already in a batch (what the windowing replays at start)."""

    #: id of the last chunk read: pass it as `after_chunk` for the next page (None: no more pages)
    last_chunk: int | None = None


@dataclass(frozen=True)
class WindowMark:
    """The revision a window was last uploaded with, kept until it can no longer be revised."""

    sensor: str
    quantity: str
    unit: str
    window_ms: int
    window_start: int
    rev: int
    #: windowing clock after which the window is never revised again (the row is then deleted)
    expires_ms: int


@dataclass(frozen=True)
class WindowProgress:
    """What a sealed batch tells the store about windowing: its clock and the revisions it carries."""

    watermark_ms: int
    revisions: tuple[WindowMark, ...] = ()


@dataclass(frozen=True)
class WindowState:
    """The windowing facts persisted by sealed batches (None: no batch ever carried window progress)."""

    watermark_ms: int | None
    revisions: tuple[WindowMark, ...]


@dataclass(frozen=True)
class OutboxEntry:
    """One signed batch waiting for the backend's acknowledgement."""

    seq: int
    blob: bytes
    readings: int
    created_ms: int
    #: the epoch of the database it was read from (acknowledge it with this: docs/buffer.md, "Epoch")
    epoch: bytes = b""


@dataclass(frozen=True)
class StoreStatistics:
    """Counters of one open store (this process) plus what the database holds now."""

    committed: int  # readings committed since open
    pending: int  # readings in the database not yet in a batch
    batched: int  # readings sealed into batches since open
    delivered: int  # readings in batches acknowledged since open
    outbox_rows: int  # batches waiting for acknowledgement
    dropped: int  # readings given up (quota, full disk, storage down) since open
    gaps: int  # gap records written since open
    queued: int  # readings submitted but not yet committed
    db_bytes: int  # database file plus its WAL on disk
    used_bytes: int  # pages in use (what max_bytes limits)
    commits: int  # group commits since open
    last_commit_ms: int | None  # wall clock of the last successful group commit
    errors: int  # failed storage operations since open
    last_error: str | None
    pruned: int  # raw readings pruned after keep_raw_s since open
    quarantined: int  # corrupt databases moved aside at open


@dataclass(frozen=True)
class TrafficDay:
    """The uplink's traffic of one UTC day, as stored (buffer/traffic_days.py)."""

    day: int  # days since 1970-01-01 (UTC)
    app_sent: int
    app_received: int
    tcp_sent: int
    tcp_received: int
    segments_out: int
    segments_in: int
    readings: int
