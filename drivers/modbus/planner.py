"""Request planner (pure): merge the fields of one slave into the fewest reads.

Limits come from the Modbus Application Protocol V1.1b3 (section 6): a read returns at most
125 registers (function codes 3 and 4) or 2,000 bits (function codes 1 and 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.modbus.registers import RegisterKind
from kernel.errors import ConfigError

MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000


class Placed(Protocol):
    """Anything that occupies `count` addresses from `address` in one table."""

    @property
    def kind(self) -> RegisterKind: ...

    @property
    def address(self) -> int: ...

    @property
    def count(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AddressRange:
    """Addresses start..end (both inclusive) of one table."""

    kind: RegisterKind
    start: int
    end: int

    def overlaps(self, kind: RegisterKind, start: int, stop: int) -> bool:
        """Whether [start, stop) of `kind` touches this range."""
        return kind == self.kind and start <= self.end and self.start < stop


@dataclass(frozen=True, slots=True)
class PlannedRead:
    """One read request and the fields (indices into the planned sequence) it serves."""

    kind: RegisterKind
    address: int
    count: int
    fields: tuple[int, ...]

    @property
    def stop(self) -> int:
        """First address after this read."""
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """Knobs of the planner; the defaults are the protocol's maxima."""

    max_gap: int = 0
    max_registers: int = MAX_REGISTERS_PER_READ
    max_bits: int = MAX_BITS_PER_READ
    forbidden: tuple[AddressRange, ...] = ()

    def size_limit(self, kind: RegisterKind) -> int:
        """Largest read allowed for this table."""
        if kind.is_bit:
            return min(self.max_bits, MAX_BITS_PER_READ)
        return min(self.max_registers, MAX_REGISTERS_PER_READ)


def _check_field(item: Placed, limits: PlanLimits) -> None:
    stop = item.address + item.count
    if item.count > limits.size_limit(item.kind):
        raise ConfigError(
            f"{item.kind} field at {item.address} spans {item.count} addresses, "
            f"more than one read may return ({limits.size_limit(item.kind)})"
        )
    if stop > 0x10000:
        raise ConfigError(f"{item.kind} field at {item.address} runs past address 65535")
    for rng in limits.forbidden:
        if rng.overlaps(item.kind, item.address, stop):
            raise ConfigError(
                f"{item.kind} field at {item.address} lies in the forbidden range {rng.start}..{rng.end}"
            )


def _may_extend(kind: RegisterKind, start: int, stop: int, item: Placed, limits: PlanLimits) -> bool:
    """Whether the read [start, stop) may grow to also cover `item`."""
    gap = item.address - stop
    new_stop = max(stop, item.address + item.count)
    if gap > limits.max_gap or new_stop - start > limits.size_limit(kind):
        return False
    return not any(rng.overlaps(kind, stop, item.address) for rng in limits.forbidden)


def plan_reads(items: Sequence[Placed], limits: PlanLimits = PlanLimits()) -> list[PlannedRead]:
    """Cover every item with as few reads as the limits allow, never touching a forbidden range.

    Greedy over items sorted by address: a read keeps growing while the hole it must fill is
    at most `max_gap` addresses, contains no forbidden address and the read stays in size.
    """
    for item in items:
        _check_field(item, limits)
    order = sorted(range(len(items)), key=lambda i: (items[i].kind, items[i].address))
    reads: list[PlannedRead] = []
    members: list[int] = []
    kind, start, stop = RegisterKind.HOLDING, 0, 0
    for index in order:
        item = items[index]
        if members and item.kind == kind and _may_extend(kind, start, stop, item, limits):
            members.append(index)
            stop = max(stop, item.address + item.count)
            continue
        if members:
            reads.append(PlannedRead(kind, start, stop - start, tuple(members)))
        members = [index]
        kind, start, stop = item.kind, item.address, item.address + item.count
    if members:
        reads.append(PlannedRead(kind, start, stop - start, tuple(members)))
    return reads


def one_read_per_field(items: Sequence[Placed]) -> list[PlannedRead]:
    """The naive plan (one request per field), the baseline the benchmark compares with."""
    return [PlannedRead(it.kind, it.address, it.count, (i,)) for i, it in enumerate(items)]
