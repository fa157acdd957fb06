"""A sink that records what drivers emit, for tests and tools that check drivers."""

from __future__ import annotations

from kernel.model import HealthEvent, Reading


class RecordingSink:
    """A `drivers.base.Sink` that keeps everything a driver emits, in order."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.events: list[HealthEvent] = []

    def reading(self, reading: Reading) -> None:
        self.readings.append(reading)

    def event(self, event: HealthEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        """The kinds of the health events, in order."""
        return [e.kind for e in self.events]

    def values(self, sensor: str, quantity: str) -> list[float]:
        """The values of one series, in order."""
        return [r.value for r in self.readings if r.sensor == sensor and r.quantity == quantity]
