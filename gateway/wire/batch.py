"""What a batch carries: the series table, columnar readings and windows, gaps and health events."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kernel.model import Quality, Reading

#: the body format version this library writes
FORMAT_VERSION = 6
#: the versions it reads: 1 has no epoch and no key rollover, 2 no predictors and no byte-plane
#: columns, 3 always carries the epoch and has no sparse or LZMA columns and no series catalogues,
#: 4 names its gateway, keeps the creation time in ms, spells out quantities and units, always
#: compresses its body, has its readings counts and heads as two arrays and has no context-modelled
#: (PPMd, brotli, modelled symbols) integer columns, no level predictor and no circular steps, 5
#: states the counts of the readings' timestamp, step and grid columns (docs/wire-format.md, "Versions")
READABLE_VERSIONS = frozenset({1, 2, 3, 4, 5, 6})
#: length of a batch epoch: 128 random bits drawn with each new buffer database
EPOCH_LENGTH = 16
#: the epoch of tools and tests that have no buffer database, and of every version-1 batch's key
#: at the receiver (version 1 carries no epoch)
NO_EPOCH = bytes(EPOCH_LENGTH)

Int32Array = npt.NDArray[np.int32]
Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
UInt16Array = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class SeriesInfo:
    """One row of the series table: what a column of values means and how finely it is recorded."""

    sensor: str
    quantity: str
    unit: str
    #: value step (e.g. 0.01); None means the values travel as lossless float64
    resolution: float | None = None
    #: timestamps are rounded to this many milliseconds (a 60-s sensor needs no more than 1000)
    time_resolution_ms: int = 1

    def __post_init__(self) -> None:
        if self.resolution is not None and not (self.resolution > 0 and np.isfinite(self.resolution)):
            raise ValueError(f"resolution must be a positive finite number, got {self.resolution!r}")
        try:
            time_resolution = operator.index(self.time_resolution_ms)  # numpy ints welcome
        except TypeError:
            time_resolution = 0
        if time_resolution < 1:
            raise ValueError(f"time_resolution_ms must be an int >= 1, got {self.time_resolution_ms!r}")
        object.__setattr__(self, "time_resolution_ms", time_resolution)
        if self.resolution is not None:
            object.__setattr__(self, "resolution", float(self.resolution))


@dataclass(frozen=True, eq=False)
class ReadingColumns:
    """Raw readings as equal-length numpy columns; `series` indexes the series table."""

    series: Int32Array
    ts_ms: Int64Array
    value: Float64Array
    quality: UInt16Array

    def __post_init__(self) -> None:
        object.__setattr__(self, "series", np.asarray(self.series, dtype=np.int32))
        object.__setattr__(self, "ts_ms", np.asarray(self.ts_ms, dtype=np.int64))
        object.__setattr__(self, "value", np.asarray(self.value, dtype=np.float64))
        object.__setattr__(self, "quality", np.asarray(self.quality, dtype=np.uint16))
        _require_equal_lengths(self.series, self.ts_ms, self.value, self.quality)

    def __len__(self) -> int:
        return int(self.series.shape[0])

    @classmethod
    def empty(cls) -> ReadingColumns:
        """No readings (a batch of windows, gaps or events only)."""
        return cls(
            series=np.zeros(0, np.int32),
            ts_ms=np.zeros(0, np.int64),
            value=np.zeros(0, np.float64),
            quality=np.zeros(0, np.uint16),
        )

    @classmethod
    def from_readings(cls, readings: Iterable[Reading], series: Sequence[SeriesInfo]) -> ReadingColumns:
        """Columns for `readings`, each matched to its (sensor, quantity, unit) row of `series`."""
        index = {(s.sensor, s.quantity, s.unit): i for i, s in enumerate(series)}
        rows = list(readings)
        try:
            idx = [index[(r.sensor, r.quantity, r.unit)] for r in rows]
        except KeyError as exc:
            raise ValueError(f"reading of a series missing from the series table: {exc}") from None
        return cls(
            series=np.array(idx, np.int32),
            ts_ms=np.array([r.ts_ms for r in rows], np.int64),
            value=np.array([r.value for r in rows], np.float64),
            quality=np.array([int(r.quality) for r in rows], np.uint16),
        )


@dataclass(frozen=True, eq=False)
class WindowColumns:
    """Closed aggregation windows as equal-length numpy columns; a later `rev` supersedes an earlier one."""

    series: Int32Array
    window_start: Int64Array
    window_ms: Int64Array
    rev: Int32Array
    count: Int64Array
    nan_count: Int64Array
    min: Float64Array
    max: Float64Array
    mean: Float64Array
    std: Float64Array
    first: Float64Array
    last: Float64Array
    first_ts: Int64Array
    last_ts: Int64Array

    def __post_init__(self) -> None:
        for name, dtype in WINDOW_FIELDS:
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dtype))
        _require_equal_lengths(*(getattr(self, name) for name, _ in WINDOW_FIELDS))

    def __len__(self) -> int:
        return int(self.series.shape[0])

    @classmethod
    def empty(cls) -> WindowColumns:
        """No windows (a batch of raw readings only)."""
        return cls(**{name: np.zeros(0, dtype) for name, dtype in WINDOW_FIELDS})


#: the window columns in wire order with their dtypes
WINDOW_FIELDS: tuple[tuple[str, type[np.generic]], ...] = (
    ("series", np.int32),
    ("window_start", np.int64),
    ("window_ms", np.int64),
    ("rev", np.int32),
    ("count", np.int64),
    ("nan_count", np.int64),
    ("min", np.float64),
    ("max", np.float64),
    ("mean", np.float64),
    ("std", np.float64),
    ("first", np.float64),
    ("last", np.float64),
    ("first_ts", np.int64),
    ("last_ts", np.int64),
)


@dataclass(frozen=True)
class Gap:
    """Readings of one series that are known to be lost between two instants, and why."""

    series: int
    from_ms: int
    to_ms: int
    count: int
    reason: str


@dataclass(frozen=True)
class Event:
    """A health event travelling with the data (stale sensor, quarantined database...)."""

    ts_ms: int
    source: str
    kind: str
    detail: str


@dataclass(frozen=True)
class KeyRollover:
    """A gateway's statement, inside a batch signed by its current key, that `new_public_key` follows it.

    `proof` is the new key's Ed25519 signature over `rollover_message(...)`: the gateway holds the
    new private key (docs/wire-format.md, "Key rollover").
    """

    new_public_key: bytes
    proof: bytes


@dataclass(frozen=True, eq=False)
class Batch:
    """A verified, decoded batch as the backend sees it.

    Its identity is (gateway_id, epoch, seq): the epoch is drawn anew with each buffer database, so a
    seq that starts again after a quarantine, an SD card swap or a reinstall is a new batch.
    """

    version: int
    #: the gateway the signing key is registered for (a version-5 body does not name it); "" when a
    #: tool verified with a bare key and was not told whose (`verify.UNKNOWN_GATEWAY`)
    gateway_id: str
    seq: int
    #: version 5 carries whole seconds: a multiple of 1000
    created_ms: int
    #: the full 8-byte kid of the key that verified it, whichever envelope (a compact one carries
    #: only its first 4 bytes)
    kid: bytes
    series: tuple[SeriesInfo, ...]
    readings: ReadingColumns
    windows: WindowColumns
    gaps: tuple[Gap, ...] = field(default=())
    events: tuple[Event, ...] = field(default=())
    #: 16 bytes; NO_EPOCH for a version-1 batch
    epoch: bytes = NO_EPOCH
    #: a verified key rollover statement (its proof checked), or None
    rollover: KeyRollover | None = None
    #: SHA-256 over the signed content (protected header and payload): two envelopes of the same
    #: signed content have the same digest, so a receiver deduplicates on it
    digest: bytes = b""
    #: version 4: the id of the series catalogue the batch declares or refers to (8 bytes); empty
    #: for versions 1-3, which always carry their table
    catalogue: bytes = b""
    #: the deterministic CBOR of the table when the batch declares its catalogue (a receiver keeps it
    #: to decode later batches that only refer to it); empty when it refers
    catalogue_table: bytes = b""

    def iter_readings(self) -> Iterator[Reading]:
        """The raw readings as domain objects, ordered by series then timestamp."""
        cols = self.readings
        for s, ts, value, quality in zip(
            cols.series.tolist(),
            cols.ts_ms.tolist(),
            cols.value.tolist(),
            cols.quality.tolist(),
            strict=True,
        ):
            info = self.series[s]
            yield Reading(info.sensor, info.quantity, ts, value, info.unit, Quality(quality))


def _require_equal_lengths(*columns: np.ndarray) -> None:
    lengths = {c.shape for c in columns}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError(f"columns must be one-dimensional and of equal length, got {lengths}")
