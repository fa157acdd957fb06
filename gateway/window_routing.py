"""Windows in the agent: which readings feed which `Windower`, what still travels raw, what closed.

The batcher hands every slice of committed readings it seals to `take` and then asks `close` for
the windows due at its clock; both go into the same batch, whose seal transaction stores the clock
and the revisions (`buffer.window_replay`). After a restart `restore` rebuilds the state by replaying
the readings already batched, so a late reading still revises the window it belongs to instead of
starting a new one. Pure state over arrays: the batcher does the I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from buffer import BatchedReadings, SeriesKey, WindowMark, WindowState
from gateway import wire
from gateway.aggregation import Windower, WindowerStatistics, Windows
from gateway.config import ALL_WINDOW_STATISTICS, GatewayConfig
from gateway.wire.batch import WINDOW_FIELDS
from kernel.model import Quality

#: the statistics a sensor can choose to upload (count, nan_count and the timestamps always travel)
STATISTICS = ALL_WINDOW_STATISTICS

Upload = Literal["windows", "raw", "both"]
#: (window_ms, allowed_lateness_ms, max_lateness_ms): sensors sharing it share one Windower
Clock = tuple[int, int, int]


@dataclass(frozen=True)
class WindowPolicy:
    """How one sensor's readings are windowed and what of them is uploaded."""

    window_ms: int
    allowed_lateness_ms: int
    max_lateness_ms: int
    upload: Upload = "windows"
    statistics: frozenset[str] = frozenset(STATISTICS)

    @property
    def clock(self) -> Clock:
        """What decides when its windows close and expire."""
        return (self.window_ms, self.allowed_lateness_ms, self.max_lateness_ms)


@dataclass(frozen=True)
class Taken:
    """What a slice of readings became: which rows still travel raw, and which of those are late."""

    raw: npt.NDArray[np.bool_]
    late: npt.NDArray[np.bool_]

    @classmethod
    def everything_raw(cls, n: int) -> Taken:
        """No windowing: all `n` readings travel raw, none late."""
        return cls(raw=np.ones(n, np.bool_), late=np.zeros(n, np.bool_))


@dataclass(frozen=True)
class Closed:
    """Windows due at a clock: `columns.series` indexes `keys`; `marks` are the revisions among them."""

    keys: tuple[SeriesKey, ...]
    columns: wire.WindowColumns
    marks: tuple[WindowMark, ...]

    def __len__(self) -> int:
        return len(self.columns)

    @classmethod
    def nothing(cls) -> Closed:
        """No window closed."""
        return cls((), wire.WindowColumns.empty(), ())


def policies_of(config: GatewayConfig) -> dict[str, WindowPolicy]:
    """The window policy of every enabled sensor that has a `windows` section."""
    policies = {}
    for sensor in config.sensors:
        w = sensor.windows
        if w is None or not sensor.enabled or w.upload == "raw":
            continue
        policies[sensor.id] = WindowPolicy(
            window_ms=round(w.length_s * 1000),
            allowed_lateness_ms=round(w.allowed_lateness_s * 1000),
            max_lateness_ms=round(w.max_lateness_s * 1000),
            upload=w.upload,
            statistics=frozenset(w.statistics),
        )
    return policies


class Windowing:
    """The streaming windows of every windowed sensor, keyed by (sensor, quantity, unit)."""

    def __init__(self, policies: Mapping[str, WindowPolicy]) -> None:
        self._policies = dict(policies)
        self._windowers: dict[Clock, Windower] = {}
        #: every windowed series ever seen, numbered for the windowers
        self._series = SeriesTable()
        self.reset()

    @property
    def active(self) -> bool:
        """Whether any sensor is windowed at all."""
        return bool(self._policies)

    def reset(self) -> None:
        """Forget every window (before a restore)."""
        self._windowers = {
            p.clock: Windower(
                window_ms=p.clock[0], allowed_lateness_ms=p.clock[1], max_lateness_ms=p.clock[2]
            )
            for p in self._policies.values()
        }

    def take(
        self,
        keys: Sequence[SeriesKey],
        series: npt.NDArray[np.int32],
        ts_ms: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint16],
        *,
        arrived_ms: int | None = None,
    ) -> Taken:
        """Feed a slice (`series` indexes `keys`) to the windows; device-invalid values count as NaN.

        Readings are judged late at `arrived_ms` (the clock `close` is called with next).
        """
        policies = [self._policies.get(key[0]) for key in keys]
        if not self.active or not len(ts_ms):
            return Taken.everything_raw(len(ts_ms))
        late = np.zeros(len(ts_ms), np.bool_)
        ids = np.array(
            [-1 if p is None else self._series.add(k) for k, p in zip(keys, policies, strict=True)]
        )
        for clock, windower in self._windowers.items():
            in_clock = np.array([p is not None and p.clock == clock for p in policies], np.bool_)
            rows = np.flatnonzero(in_clock[series])
            if not len(rows):
                continue
            invalid = (quality[rows] & int(Quality.INVALID | Quality.OUT_OF_RANGE)) != 0
            values = np.where(invalid, np.nan, value[rows])
            too_late = windower.add(ids[series[rows]], ts_ms[rows], values, arrived_ms=arrived_ms)
            late[rows[too_late]] = True
        travels_raw = np.array([p is None or p.upload != "windows" for p in policies], np.bool_)
        return Taken(raw=travels_raw[series] | late, late=late)

    def close(self, now_ms: int) -> Closed:
        """The windows due at `now_ms` (first emissions and revisions), ready for a batch."""
        parts = [windows for w in self._windowers.values() if len(windows := w.advance(now_ms))]
        if not parts:
            return Closed.nothing()
        local: dict[int, int] = {}
        for windows in parts:
            for sid in np.unique(windows.series).tolist():
                local.setdefault(sid, len(local))
        keys = tuple(self._series.keys[sid] for sid in local)
        columns = _concat_columns([self._columns(w, local) for w in parts])
        marks = tuple(self._marks(keys, columns))
        return Closed(keys, columns, marks)

    def replay_from(self, watermark_ms: int) -> int:
        """The earliest timestamp a restore must replay to rebuild every window still revisable."""
        return watermark_ms - max(p.window_ms + p.max_lateness_ms for p in self._policies.values())

    def replay(self, page: BatchedReadings) -> None:
        """Feed one page of readings batched before a restart (call `resume` after the last page)."""
        self.take(page.series_keys, page.series, page.ts_ms, page.value, page.quality)

    def resume(self, state: WindowState) -> None:
        """After the replay: catch up to the stored clock and revisions without emitting anything."""
        if state.watermark_ms is None:
            return
        revisions: dict[Clock, dict[tuple[int, int], int]] = {}
        for mark in state.revisions:
            policy = self._policies.get(mark.sensor)
            sid = self._series.find((mark.sensor, mark.quantity, mark.unit))
            if policy is None or policy.window_ms != mark.window_ms or sid is None:
                continue  # the configuration changed since: that window is no longer kept
            revisions.setdefault(policy.clock, {})[(sid, mark.window_start)] = mark.rev
        for clock, windower in self._windowers.items():
            windower.resume(state.watermark_ms, revisions.get(clock, {}))

    def statistics(self) -> WindowerStatistics:
        """The counters of every windower, summed."""
        stats = [w.statistics() for w in self._windowers.values()]
        return WindowerStatistics(
            **{f.name: sum(getattr(s, f.name) for s in stats) for f in dataclasses.fields(WindowerStatistics)}
        )

    def _columns(self, windows: Windows, local: Mapping[int, int]) -> wire.WindowColumns:
        """Aggregation rows as wire columns; statistics a sensor does not upload become NaN."""
        sids = windows.series.tolist()
        stats: dict[str, npt.NDArray[np.float64]] = {}
        for name in STATISTICS:
            hidden = np.array(
                [name not in self._policies[self._series.keys[s][0]].statistics for s in sids], bool
            )
            stats[name] = np.where(hidden, np.nan, getattr(windows, name))
        return wire.WindowColumns(
            series=np.array([local[s] for s in sids], np.int32),
            window_start=windows.window_start,
            window_ms=np.full(len(windows), windows.window_ms, np.int64),
            rev=windows.rev,
            count=windows.count,
            nan_count=windows.nan_count,
            first_ts=windows.first_ts,
            last_ts=windows.last_ts,
            **stats,
        )

    def _marks(self, keys: Sequence[SeriesKey], columns: wire.WindowColumns) -> Iterable[WindowMark]:
        """Revisions (rev > 0) to remember until their window can no longer be revised."""
        for row in np.flatnonzero(columns.rev > 0).tolist():
            key = keys[int(columns.series[row])]
            start, window_ms = int(columns.window_start[row]), int(columns.window_ms[row])
            expires = start + window_ms + self._policies[key[0]].max_lateness_ms
            yield WindowMark(*key, window_ms, start, int(columns.rev[row]), expires)


class SeriesTable:
    """Series numbered in order of first use (a batch's series table, the windowers' ids)."""

    def __init__(self) -> None:
        self.keys: list[SeriesKey] = []
        self._index: dict[SeriesKey, int] = {}

    def add(self, key: SeriesKey) -> int:
        """The number of `key`, given on first use."""
        number = self._index.get(key)
        if number is None:
            number = self._index[key] = len(self.keys)
            self.keys.append(key)
        return number

    def find(self, key: SeriesKey) -> int | None:
        """The number of `key`, None if it was never added."""
        return self._index.get(key)


def _concat_columns(parts: Sequence[wire.WindowColumns]) -> wire.WindowColumns:
    if len(parts) == 1:
        return parts[0]
    return wire.WindowColumns(
        **{name: np.concatenate([getattr(p, name) for p in parts]) for name, _ in WINDOW_FIELDS}
    )
