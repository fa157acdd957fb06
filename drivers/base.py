"""What every driver is to the runtime: something that runs until cancelled and emits readings.

Drivers never import the buffer or the uplink (architecture rule 2): they push into a `Sink`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from kernel.model import HealthEvent, Reading

SectionT = TypeVar("SectionT")


class Sink(Protocol):
    """Where a driver puts what it measured; both calls are non-blocking."""

    def reading(self, reading: Reading) -> None:
        """Accept one reading (queued for the buffer's group commit)."""

    def event(self, event: HealthEvent) -> None:
        """Accept one health event (stale sensor, port lost, ...)."""


class Driver(Protocol):
    """A supervised task: `run` returns only when cancelled, raises DeviceError on failure."""

    name: str

    async def run(self, sink: Sink) -> None:
        """Read the device(s) forever, pushing readings into `sink`."""

    def statistics(self) -> Any:
        """Return a frozen dataclass of counters for the CLI and metrics."""


@dataclass(frozen=True)
class DriverSpec(Generic[SectionT]):
    """One configured sensor as a driver family sees it: its id, its own config section and common knobs."""

    sensor_id: str
    section: SectionT
    stale_after_s: float = 120.0
    #: a directory the driver may keep small state files in (frame counters, ...)
    state_dir: Path | None = None
