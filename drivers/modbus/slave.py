"""One slave as the bus sees it: its plan of reads and how an answer becomes readings (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from drivers.modbus.breaker import SlaveBreaker
from drivers.modbus.planner import PlanLimits, PlannedRead, plan_reads
from drivers.modbus.profile import RegisterField, RegisterMap
from drivers.modbus.registers import decode_words, scaled
from kernel.errors import ConfigError, ProtocolError
from kernel.model import Quality, Reading


def select_fields(register_map: RegisterMap, quantities: Sequence[str] | None) -> list[RegisterField]:
    """The numeric fields to poll: all of them, or the named ones (ConfigError on a typo)."""
    numeric = [f for f in register_map.fields if f.numeric]
    if quantities is None:
        return numeric
    known = {f.quantity: f for f in numeric}
    missing = [q for q in quantities if q not in known]
    if missing:
        raise ConfigError(f"profile {register_map.name!r} has no numeric field(s) {missing}")
    return [known[q] for q in quantities]


def field_value(register_map: RegisterMap, item: RegisterField, words: Sequence[int]) -> float:
    """Decode and scale one field from the registers (or bits) it occupies."""
    raw = decode_words(words, item.dtype, register_map.order_of(item), bit=item.bit, width=item.width)
    if isinstance(raw, str):
        raise ProtocolError(f"{item.quantity} is text, not a number")
    return scaled(raw, item.scale, item.offset)


def readings_from_answer(
    sensor: str,
    register_map: RegisterMap,
    fields: Sequence[RegisterField],
    read: PlannedRead,
    values: Sequence[int],
    ts_ms: int,
) -> list[Reading]:
    """The readings of every field `read` covers, from the values it returned.

    A value that is not finite (NaN or infinity, how float meters mark "no value") is kept
    as reported and flagged INVALID.
    """
    out = []
    for index in read.fields:
        item = fields[index]
        start = item.address - read.address
        value = field_value(register_map, item, values[start : start + item.count])
        quality = Quality.OK if math.isfinite(value) else Quality.INVALID
        out.append(Reading(sensor, item.quantity, ts_ms, value, item.unit, quality))
    return out


def refused_readings(
    sensor: str, fields: Sequence[RegisterField], read: PlannedRead, ts_ms: int
) -> list[Reading]:
    """The readings of a read the device refused with an exception: no value, flagged."""
    return [
        Reading(sensor, fields[i].quantity, ts_ms, math.nan, fields[i].unit, Quality.DEVICE_WARNING)
        for i in read.fields
    ]


def split_read(read: PlannedRead, fields: Sequence[RegisterField]) -> list[PlannedRead]:
    """One read per field: the fallback when a merged read hits an address the device refuses."""
    return [PlannedRead(fields[i].kind, fields[i].address, fields[i].count, (i,)) for i in read.fields]


@dataclass
class Slave:
    """A sensor on the bus: unit id, fields, planned reads, timing and its breaker."""

    sensor: str
    unit: int
    register_map: RegisterMap
    fields: tuple[RegisterField, ...]
    reads: list[PlannedRead]
    interval_s: float
    timeout_s: float
    retries: int
    breaker: SlaveBreaker = field(default_factory=SlaveBreaker)
    next_due: float = 0.0
    polls_ok: int = 0
    polls_failed: int = 0
    exception_responses: int = 0
    #: the exception code each read currently returns (absent: it answered normally)
    refusals: dict[PlannedRead, int] = field(default_factory=dict)
    stale_after_s: float = 120.0
    last_data: float | None = None
    stale: bool = False
    #: not before then: the slave may still be answering a read that timed out
    settle_until: float = 0.0

    @classmethod
    def planned(
        cls,
        sensor: str,
        unit: int,
        register_map: RegisterMap,
        fields: Sequence[RegisterField],
        limits: PlanLimits,
        **timing: float,
    ) -> Slave:
        """A slave whose reads are planned from its fields and the profile's limits."""
        reads = plan_reads(fields, limits)
        return cls(
            sensor=sensor,
            unit=unit,
            register_map=register_map,
            fields=tuple(fields),
            reads=reads,
            interval_s=float(timing["interval_s"]),
            timeout_s=float(timing["timeout_s"]),
            retries=int(timing["retries"]),
        )

    def schedule_next(self, now: float) -> None:
        """Keep a steady rate; after falling behind, start again from now (no burst)."""
        self.next_due = max(self.next_due + self.interval_s, now)

    def stale_at(self) -> float:
        """When the slave turns stale if no readings come (infinity once it is stale)."""
        if self.stale or self.last_data is None:
            return math.inf
        return self.last_data + self.stale_after_s

    def due_at(self) -> float:
        """When this slave next wants the bus (dead slaves: when their probe is due).

        Never before `settle_until`: a late answer to a timed-out read must not meet a new one.
        """
        due = self.next_due
        if not self.breaker.may_poll(due):
            due = max(due, self.breaker.probe_at)
        return max(due, self.settle_until)
