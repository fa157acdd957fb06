"""A sink that records what drivers emit, for tests and tools that check drivers."""

from __future__ import annotations

from kernel.model import HealthEvent, Reading


class RecordingSink:
    """A `drivers.base.Sink` that keeps everything a driver emits, in order."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.events: list[HealthEvent] = []
        #: the same readings by sensor: tests with twenty sensors poll counts many times a second
        self._by_sensor: dict[str, list[Reading]] = {}

    def reading(self, reading: Reading) -> None:
        self.readings.append(reading)
        self._by_sensor.setdefault(reading.sensor, []).append(reading)

    def event(self, event: HealthEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        """The kinds of the health events, in order."""
        return [e.kind for e in self.events]

    def of(self, sensor: str) -> list[Reading]:
        """The readings of one sensor, in order."""
        return self._by_sensor.get(sensor, [])

    def count(self, sensor: str) -> int:
        """How many readings one sensor emitted."""
        return len(self._by_sensor.get(sensor, []))

    def values(self, sensor: str, quantity: str) -> list[float]:
        """The values of one series, in order."""
        return [r.value for r in self.readings if r.sensor == sensor and r.quantity == quantity]
