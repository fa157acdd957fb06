"""The wall clock's sync state: transitions and steps become health events; readings get flagged."""

from __future__ import annotations

import json

from gateway.agent import StoreSink
from gateway.clock import ClockSample, ClockWatch, sample_now
from kernel.model import Quality, Reading

DAY_MS = 86_400_000
#: fake-hwclock's saved time after a week switched off, and the true time
SAVED, TRUE = 1_767_225_600_000, 1_767_225_600_000 + 7 * DAY_MS


def kinds(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.kind for e in events]


def test_a_boot_without_network_is_flagged_until_ntp_steps_the_clock_and_the_step_is_reported() -> None:
    watch = ClockWatch(boot="b-1")
    first = watch.observe(ClockSample(SAVED, 5_000, synchronised=False))
    assert kinds(first) == ["clock.unsynchronised"] and watch.synchronised is False
    assert watch.observe(ClockSample(SAVED + 1_003, 6_000, synchronised=False)) == []  # 3 ms drift: no step
    # NTP steps the clock by a week and says so in the same second
    events = watch.observe(ClockSample(TRUE + 2_000, 7_000, synchronised=True))
    assert kinds(events) == ["clock.stepped", "clock.synchronised"]
    step = TRUE - SAVED - 3
    assert json.loads(first[0].detail) == {"boot": "b-1", "since_ms": SAVED}
    assert json.loads(events[0].detail) == {"boot": "b-1", "step_ms": step, "synchronised": True}
    assert json.loads(events[1].detail) == {"boot": "b-1", "since_ms": SAVED, "step_ms": step}
    assert all(e.source == "clock" and e.ts_ms == TRUE + 2_000 for e in events)
    stats = watch.statistics()
    assert (stats.synchronised, stats.steps, stats.unsynced_step_ms) == (True, 1, step)


def test_a_synchronised_clock_reports_steps_and_losing_sync() -> None:
    watch = ClockWatch(step_threshold_ms=500)
    assert watch.observe(ClockSample(TRUE, 1_000, synchronised=True)) == []
    stepped = watch.observe(ClockSample(TRUE + 1_000 - 600, 2_000, synchronised=True))
    assert kinds(stepped) == ["clock.stepped"] and json.loads(stepped[0].detail)["step_ms"] == -600
    assert kinds(watch.observe(ClockSample(TRUE + 2_000, 3_600, synchronised=False))) == [
        "clock.unsynchronised"
    ]
    assert watch.statistics().unsynced_step_ms == 0  # the step before losing sync is not the flagged ones'


def test_a_platform_that_cannot_tell_counts_as_synchronised() -> None:
    assert sample_now(lambda: None).synchronised is True
    assert sample_now(lambda: False).synchronised is False


class FakeStore:
    def __init__(self) -> None:
        self.readings: list[Reading] = []

    def submit(self, readings: tuple[Reading, ...]) -> None:
        self.readings.extend(readings)


def test_the_sink_flags_readings_only_while_the_clock_is_unsynchronised() -> None:
    store = FakeStore()
    sink = StoreSink(store)  # type: ignore[arg-type]
    sink.reading(Reading("dust-1", "pm10", TRUE, 12.0, "ug/m3", Quality.ESTIMATED))
    sink.clock_synchronised = False
    sink.reading(Reading("dust-1", "pm10", TRUE + 1_000, 13.0, "ug/m3", Quality.ESTIMATED))
    assert [r.quality for r in store.readings] == [
        Quality.ESTIMATED,
        Quality.ESTIMATED | Quality.CLOCK_UNSYNCED,
    ]
    assert store.readings[1].value == 13.0 and sink.unsynced_readings == 1
