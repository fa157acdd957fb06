"""What a bus family tells the agent about itself: one `BusFamily` per configurable kind of sensor.

Adding a family is one description in its package (`FAMILIES` in `drivers/<family>/__init__.py`) and one
line in gateway/buses.py: the config's sensor union, the `driver = "…"` tags, which fields are files
(taken relative to the config file's folder) and which are secrets (never echoed in an error), and how
its drivers are built all come from these descriptions (docs/decisions.md, "Bus families").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic

from drivers.base import Driver, DriverSpec, SectionT
from kernel.errors import ConfigError


@dataclass(frozen=True)
class BusFamily(Generic[SectionT]):
    """One kind of sensor: its tag, its config section, its driver builder, its file and secret fields."""

    #: the sensor's `driver = "<tag>"` and the name of its section (`[sensors.<tag>]`)
    tag: str
    #: the pydantic model of the section
    section: type[SectionT]
    #: the family's drivers for all its enabled sensors at once (families group sensors on one bus);
    #: two tags may share one builder, which then sees the sensors of both
    build: Callable[[Sequence[DriverSpec[SectionT]]], list[Driver]]
    #: one line naming the kind of sensor (the config's JSON schema shows it)
    summary: str
    #: fields of the section holding a file or folder path: relative ones are taken from the config's folder
    file_fields: tuple[str, ...] = ()
    #: keys (anywhere under the section) whose values are secrets
    secret_fields: frozenset[str] = frozenset()

    def spec(
        self, sensor_id: str, section: object, stale_after_s: float, state_dir: Path | None
    ) -> DriverSpec[SectionT]:
        """The driver-side view of one configured sensor of this family."""
        if not isinstance(section, self.section):
            raise ConfigError(f"sensor {sensor_id!r}: its section is not a {self.tag} section")
        return DriverSpec(sensor_id, section, stale_after_s, state_dir)
