"""Request planner: every field covered, no read over the limits, none into a forbidden range."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.planner import (
    MAX_BITS_PER_READ,
    MAX_REGISTERS_PER_READ,
    AddressRange,
    PlanLimits,
    one_read_per_field,
    plan_reads,
)
from drivers.modbus.profile import load_profile
from drivers.modbus.registers import RegisterKind
from kernel.errors import ConfigError


@dataclass(frozen=True)
class Item:
    kind: RegisterKind
    address: int
    count: int


def _forbidden(kind: RegisterKind, start: int, end: int, items: list[Item]) -> bool:
    return any(i.kind == kind and i.address <= end and start < i.address + i.count for i in items)


@st.composite
def layouts(draw):
    items = draw(
        st.lists(
            st.builds(
                Item,
                st.sampled_from(list(RegisterKind)),
                st.integers(0, 3000),
                st.sampled_from([1, 1, 2, 2, 4, 10]),
            ),
            min_size=1,
            max_size=60,
        )
    )
    items = [Item(i.kind, i.address, 1 if i.kind.is_bit else i.count) for i in items]
    ranges = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(list(RegisterKind)))
        start = draw(st.integers(0, 3000))
        end = start + draw(st.integers(0, 40))
        if not _forbidden(kind, start, end, items):
            ranges.append(AddressRange(kind, start, end))
    limits = PlanLimits(
        max_gap=draw(st.integers(0, 200)),
        max_registers=draw(st.integers(10, MAX_REGISTERS_PER_READ)),
        max_bits=draw(st.integers(1, MAX_BITS_PER_READ)),
        forbidden=tuple(ranges),
    )
    return items, limits


@settings(max_examples=300)
@given(layouts())
def test_plan_covers_every_field_within_limits_and_outside_forbidden_ranges(layout):
    items, limits = layout
    reads = plan_reads(items, limits)
    served = sorted(i for read in reads for i in read.fields)
    assert served == list(range(len(items)))
    for read in reads:
        assert 1 <= read.count <= limits.size_limit(read.kind)
        if read.kind.is_bit:
            assert read.count <= MAX_BITS_PER_READ
        else:
            assert read.count <= MAX_REGISTERS_PER_READ
        for index in read.fields:
            item = items[index]
            assert item.kind == read.kind
            assert read.address <= item.address
            assert item.address + item.count <= read.address + read.count
        for rng in limits.forbidden:
            assert not rng.overlaps(read.kind, read.address, read.address + read.count)
        # no stretch of unused addresses inside a read is longer than max_gap
        covered = sorted(
            {a for i in read.fields for a in range(items[i].address, items[i].address + items[i].count)}
        )
        assert covered[0] == read.address and covered[-1] == read.address + read.count - 1
        assert all(b - a - 1 <= limits.max_gap for a, b in itertools.pairwise(covered))


@settings(max_examples=300)
@given(layouts())
def test_plan_never_needs_more_reads_than_fields(layout):
    items, limits = layout
    assert len(plan_reads(items, limits)) <= len(one_read_per_field(items))


def test_adjacent_registers_become_one_read():
    items = [Item(RegisterKind.INPUT, a, 2) for a in range(0, 20, 2)]
    [read] = plan_reads(items)
    assert (read.address, read.count) == (0, 20)


def test_gap_larger_than_allowed_splits_the_read():
    items = [Item(RegisterKind.HOLDING, 0, 1), Item(RegisterKind.HOLDING, 5, 1)]
    assert len(plan_reads(items, PlanLimits(max_gap=3))) == 2
    assert len(plan_reads(items, PlanLimits(max_gap=4))) == 1


def test_forbidden_hole_is_never_filled():
    items = [Item(RegisterKind.HOLDING, 0, 1), Item(RegisterKind.HOLDING, 5, 1)]
    limits = PlanLimits(max_gap=10, forbidden=(AddressRange(RegisterKind.HOLDING, 3, 3),))
    assert [(r.address, r.count) for r in plan_reads(items, limits)] == [(0, 1), (5, 1)]


def test_field_inside_a_forbidden_range_is_a_config_error():
    limits = PlanLimits(forbidden=(AddressRange(RegisterKind.INPUT, 10, 20),))
    with pytest.raises(ConfigError, match="forbidden"):
        plan_reads([Item(RegisterKind.INPUT, 19, 2)], limits)


def test_field_larger_than_one_read_is_a_config_error():
    with pytest.raises(ConfigError):
        plan_reads([Item(RegisterKind.HOLDING, 0, 126)])


def test_sdm630_sixty_fields_need_at_least_ten_times_fewer_requests():
    profile = load_profile("sdm630")
    fields = profile.fields[:60]
    reads = plan_reads(fields, profile.limits())
    assert len(reads) * 10 <= len(one_read_per_field(fields))
