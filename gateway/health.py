"""Per-sensor health as the agent sees it, and the live feed of readings technicians watch.

Both sit behind the agent's sink, so they see every reading and health event whatever the driver
family: the table of `gateway status` and the stream of `gateway watch` need nothing from drivers.
Memory is bounded: per sensor one last value per quantity, a ring of recent arrival times, the
last error; per watcher a bounded queue (a slow watcher loses readings, counted, never the agent).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kernel.model import HealthEvent, Quality, Reading

#: readings per minute are counted over this window
RATE_WINDOW_S = 60.0
#: arrival times kept per sensor: 50 readings/s for a minute (a WXT520 at full rate emits ~20/s)
MAX_ARRIVALS = 3000
#: readings a watcher may fall behind before it loses some
WATCH_QUEUE = 1000
#: event kinds that report a recovery, not an error
RECOVERY_KINDS = frozenset({"recovered", "slave_alive", "bus_open", "exception_cleared"})


@dataclass(frozen=True)
class LastValue:
    """The newest reading of one quantity."""

    ts_ms: int
    value: float
    unit: str
    quality: int

    def as_json(self) -> dict[str, Any]:
        """With the quality flags by name."""
        return {
            "ts_ms": self.ts_ms,
            "value": self.value,
            "unit": self.unit,
            "quality": quality_names(self.quality),
        }


@dataclass(frozen=True)
class LastError:
    """The newest health event of a sensor that is not a recovery."""

    ts_ms: int
    kind: str
    detail: str


@dataclass
class SensorHealth:
    """What the agent saw of one sensor since it started."""

    sensor: str
    stale_after_s: float
    readings: int = 0
    errors: int = 0
    last_reading_ms: int | None = None
    last_arrival: float | None = None
    last: dict[str, LastValue] = field(default_factory=dict)
    last_error: LastError | None = None
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_ARRIVALS))

    def view(self, now: float, started: float) -> dict[str, Any]:
        """The JSON view: state (ok, waiting, stale), the reason when stale, rate and last values."""
        silent_s = now - (self.last_arrival if self.last_arrival is not None else started)
        state = "ok"
        reason = None
        if silent_s > self.stale_after_s:
            state = "stale"
            reason = f"no reading for {silent_s:.0f} s (stale after {self.stale_after_s:g} s)"
            if self.last_error is not None:
                reason += f"; last error: {self.last_error.kind}: {self.last_error.detail}"
        elif self.last_arrival is None:
            state = "waiting"
        recent = sum(1 for t in self.arrivals if now - t <= RATE_WINDOW_S)
        return {
            "state": state,
            "stale": state == "stale",
            "reason": reason,
            "stale_after_s": self.stale_after_s,
            "silent_s": round(silent_s, 1),
            "readings": self.readings,
            "readings_per_min": round(recent * 60.0 / RATE_WINDOW_S, 1),
            "last_reading_ms": self.last_reading_ms,
            "last": {q: v.as_json() for q, v in sorted(self.last.items())},
            "errors": self.errors,
            "last_error": None if self.last_error is None else self.last_error.__dict__,
        }


def quality_names(quality: int) -> list[str]:
    """The names of the flags set in a quality bit set ([] for a plain good reading)."""
    names = [flag.name for flag in Quality if flag.value and quality & flag.value and flag.name]
    unknown = quality & ~sum(flag.value for flag in Quality)
    return names + ([f"0x{unknown:x}"] if unknown else [])


class SensorBoard:
    """Health of every configured sensor, fed by the sink with the monotonic time of arrival."""

    def __init__(self, stale_after_s: dict[str, float], started: float) -> None:
        self.started = started
        self._sensors = {sid: SensorHealth(sid, after) for sid, after in stale_after_s.items()}

    def reading(self, reading: Reading, now: float) -> None:
        """Note one reading of a configured sensor (gateway health readings are not sensors)."""
        health = self._sensors.get(reading.sensor)
        if health is None:
            return
        health.readings += 1
        health.last_arrival = now
        health.arrivals.append(now)
        health.last_reading_ms = reading.ts_ms
        health.last[reading.quantity] = LastValue(
            reading.ts_ms, reading.value, reading.unit, int(reading.quality)
        )

    def event(self, event: HealthEvent) -> None:
        """Note a health event of a configured sensor: its own, or a bus's about one of its slaves."""
        health = self._sensors.get(event.source) or self._slave_of(event.detail)
        if health is None or event.kind in RECOVERY_KINDS:
            return
        health.errors += 1
        health.last_error = LastError(event.ts_ms, event.kind, event.detail)

    def _slave_of(self, detail: str) -> SensorHealth | None:
        """The sensor a Modbus bus event is about: its detail starts with the slave's sensor id
        (drivers/modbus/bus.py: "meter-1 (unit 3): unit 3 did not answer")."""
        first = detail.split(" ", 1)[0].rstrip(":")
        return self._sensors.get(first)

    def view(self, now: float) -> dict[str, dict[str, Any]]:
        """Every sensor's JSON view, in config order."""
        return {sid: health.view(now, self.started) for sid, health in self._sensors.items()}


@dataclass(frozen=True)
class ReadingFilter:
    """Which readings a watcher wants: all, or one sensor's, or some quantities'."""

    sensors: frozenset[str] = frozenset()
    quantities: frozenset[str] = frozenset()

    def matches(self, reading: Reading) -> bool:
        """Whether the watcher asked for this reading."""
        if self.sensors and reading.sensor not in self.sensors:
            return False
        return not self.quantities or reading.quantity in self.quantities


class Watcher:
    """One subscriber of the feed: a bounded queue and a count of what it lost by being slow."""

    def __init__(self, wanted: ReadingFilter) -> None:
        self.wanted = wanted
        self.queue: asyncio.Queue[Reading] = asyncio.Queue(maxsize=WATCH_QUEUE)
        self.lost = 0

    def offer(self, reading: Reading) -> None:
        """Queue a reading it wants, or count it lost when the queue is full."""
        if not self.wanted.matches(reading):
            return
        try:
            self.queue.put_nowait(reading)
        except asyncio.QueueFull:
            self.lost += 1


class ReadingFeed:
    """Fans the readings the agent accepts out to the watchers (`gateway watch`)."""

    def __init__(self) -> None:
        self._watchers: set[Watcher] = set()

    def publish(self, reading: Reading) -> None:
        """Offer a reading to every watcher; never blocks."""
        for watcher in self._watchers:
            watcher.offer(reading)

    @contextlib.contextmanager
    def watch(self, wanted: ReadingFilter) -> Iterator[Watcher]:
        """A watcher for the duration of the `with` block."""
        watcher = Watcher(wanted)
        self._watchers.add(watcher)
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)

    @property
    def watchers(self) -> int:
        """How many watchers are attached."""
        return len(self._watchers)
