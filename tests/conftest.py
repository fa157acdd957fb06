"""Shared by every test: the recording sink the drivers emit into.

Markers (pyproject.toml): `slow` for the long integration runs (kill loops, crash loop, the demo,
agent rounds of the corruption sweep): `make test-fast` leaves them out, `make test` runs everything;
`hardware` for tests/hardware (skipped unless GATEWAY_HIL=1).
"""

from __future__ import annotations

import pytest

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


@pytest.fixture
def sink() -> RecordingSink:
    """A fresh recording sink for one test."""
    return RecordingSink()
