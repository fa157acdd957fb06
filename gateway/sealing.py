"""When the batcher seals: a latency budget per reading instead of a fixed time slice.

Every reading the drivers hand in is noted here (sans-I/O: readings and the clock in, deadlines
out). A reading that travels raw must be on its way by its timestamp + its sensor's `max_delay_s`;
a window by its closing time (end + allowed lateness) + the budget; a reading past a configured
threshold (`send_immediately_above`/`below`) at once. The batcher seals everything committed when
the earliest of these deadlines comes, or as soon as `target_readings` readings wait, so a gateway
whose readings tolerate 15 minutes sends one batch per 15 minutes instead of one per slice: the fixed
cost of a batch (envelope and signature, header, counts and heads, MQTT, TLS and TCP headers: about
700 bytes on the air for profile (b)'s 30 series, of which 319 are the link's, docs/lte.md) is paid
once per budget, not once per reading time.

Durability does not change: readings are committed by the store's group commit as before; only the
moment they are sealed and sent moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.config import GatewayConfig
from gateway.window_routing import WindowPolicy, policies_of
from kernel.model import Reading

#: a wall clock that went back more than this was stepped (NTP): deadlines move back with it
STEP_BACK_MS = 1_000
#: part of a budget kept for sealing, sending and the broker's acknowledgement (at most SEND_ALLOWANCE_MAX_MS)
SEND_ALLOWANCE = 0.05
SEND_ALLOWANCE_MAX_MS = 2_000


@dataclass(frozen=True)
class Thresholds:
    """Values of one quantity that are sent at once: above `above` or below `below`."""

    above: float | None = None
    below: float | None = None

    def crossed(self, value: float) -> bool:
        """Whether `value` asks for immediate sending (NaN never does)."""
        return (self.above is not None and value > self.above) or (
            self.below is not None and value < self.below
        )


@dataclass(frozen=True)
class SealingRules:
    """Budgets (ms) per sensor, immediate-send thresholds per (sensor, quantity), the size target."""

    max_delay_ms: int
    target_readings: int
    sensor_delay_ms: Mapping[str, int] = field(default_factory=dict)
    thresholds: Mapping[tuple[str, str], Thresholds] = field(default_factory=dict)
    windows: Mapping[str, WindowPolicy] = field(default_factory=dict)

    def budget_ms(self, sensor: str) -> int:
        """How long a reading of `sensor` may wait before it is on its way, minus the send allowance."""
        budget = self.sensor_delay_ms.get(sensor, self.max_delay_ms)
        return budget - min(SEND_ALLOWANCE_MAX_MS, int(budget * SEND_ALLOWANCE))

    @classmethod
    def of(cls, config: GatewayConfig) -> SealingRules:
        """The rules a configuration asks for."""
        thresholds = {}
        for sensor in config.sensors:
            for quantity in set(sensor.send_immediately_above) | set(sensor.send_immediately_below):
                thresholds[(sensor.id, quantity)] = Thresholds(
                    sensor.send_immediately_above.get(quantity), sensor.send_immediately_below.get(quantity)
                )
        return cls(
            max_delay_ms=round(config.batching.budget_s * 1000),
            target_readings=min(config.batching.target_readings, config.batching.max_readings),
            sensor_delay_ms={
                s.id: round(s.max_delay_s * 1000) for s in config.sensors if s.max_delay_s is not None
            },
            thresholds=thresholds,
            windows=policies_of(config),
        )


class Due:
    """The earliest moment the readings noted since the last seal must be sealed."""

    def __init__(self, rules: SealingRules) -> None:
        self.rules = rules
        self._raw_deadline: int | None = None
        #: window closing time -> the latest moment a seal must emit it
        self._windows: dict[int, int] = {}
        self._waiting = 0
        self.immediate = 0
        self._last_now: int | None = None

    def note(self, reading: Reading, now_ms: int) -> bool:
        """Take one reading into account; True when the deadline moved earlier (wake the batcher)."""
        self.observe(now_ms)
        before = self.deadline_ms()
        sensor = reading.sensor
        budget = self.rules.budget_ms(sensor)
        policy = self.rules.windows.get(sensor)
        if policy is None or policy.upload != "windows":
            self._waiting += 1
            self._raise(min(reading.ts_ms, now_ms) + budget)
        if policy is not None:
            start = reading.ts_ms - reading.ts_ms % policy.window_ms
            closes = max(start + policy.window_ms + policy.allowed_lateness_ms, now_ms)
            self._windows[closes] = min(self._windows.get(closes, closes + budget), closes + budget)
        thresholds = self.rules.thresholds.get((sensor, reading.quantity))
        if thresholds is not None and thresholds.crossed(reading.value):
            self.immediate += 1
            self._raise(now_ms)
        if self._waiting >= self.rules.target_readings:
            self._raise(now_ms)
        after = self.deadline_ms()
        return after is not None and (before is None or after < before)

    def observe(self, now_ms: int) -> None:
        """Follow the wall clock: after a step back (a gateway without a real-time clock getting NTP),
        the deadlines move back too, or readings would wait the step on top of their budget. A step
        forward needs nothing: the deadlines then come early."""
        last, self._last_now = self._last_now, now_ms
        if last is None or now_ms >= last - STEP_BACK_MS:
            return
        step = now_ms - last
        if self._raw_deadline is not None:
            self._raw_deadline += step
        self._windows = {closes: due + step for closes, due in self._windows.items()}

    def event(self, now_ms: int) -> None:
        """A health event waits: it travels within the gateway's budget."""
        self._raise(now_ms + self.rules.budget_ms(""))

    def backlog(self, now_ms: int) -> None:
        """Readings of unknown age wait in the store (after a restart): seal them now."""
        self._raise(now_ms)

    def deadline_ms(self) -> int | None:
        """When the next seal is due; None while nothing waits."""
        deadlines = [d for d in (self._raw_deadline, *self._windows.values()) if d is not None]
        return min(deadlines) if deadlines else None

    def sealed(self, now_ms: int) -> None:
        """A seal at `now_ms` took everything noted so far and every window closed by then."""
        self._raw_deadline = None
        self._waiting = 0
        self._windows = {closes: due for closes, due in self._windows.items() if closes > now_ms}

    def _raise(self, deadline_ms: int) -> None:
        if self._raw_deadline is None or deadline_ms < self._raw_deadline:
            self._raw_deadline = deadline_ms
