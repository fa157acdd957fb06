"""The streaming Windower: closing at the watermark, revisions for late data, too-late readings."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.aggregation import Windower, Windows, aggregate

W = 1_000
ALLOWED = 500
MAX_LATE = 4_000


def feed(windower: Windower, rows: list[tuple[int, int, float]]) -> np.ndarray:
    return windower.add(
        np.array([r[0] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.float64),
    )


def rows_of(windows: Windows) -> list[dict[str, float]]:
    return [
        {name: column[i].item() for name, column in windows.columns().items()} for i in range(len(windows))
    ]


def assert_window_equals(got: dict[str, float], want: Windows) -> None:
    """A single-row aggregate() result against an emitted row (rev aside)."""
    assert len(want) == 1
    for name, column in want.columns().items():
        if name in ("rev", "mean_error"):
            continue
        value = column[0].item()
        if name in ("mean", "std", "sum"):
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), name
        elif isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[name]), name
        else:
            assert got[name] == value, name


def test_window_closes_at_end_plus_allowed_lateness() -> None:
    windower = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    feed(windower, [(1, 100, 1.0), (1, 900, 3.0), (2, 500, 5.0)])
    assert len(windower.advance(W + ALLOWED - 1)) == 0
    closed = windower.advance(W + ALLOWED)
    assert closed.series.tolist() == [1, 2]
    assert closed.rev.tolist() == [0, 0]
    assert closed.mean.tolist() == [2.0, 5.0]
    assert windower.statistics().closed == 2
    assert windower.statistics().open_windows == 0


def test_late_reading_within_max_lateness_revises_the_window() -> None:
    windower = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    readings = [(1, 100, 1.0), (1, 900, 3.0)]
    feed(windower, readings)
    windower.advance(2_000)
    late = [(1, 50, 11.0)]
    assert not feed(windower, late).any()
    revised = windower.advance(2_100)
    assert revised.rev.tolist() == [1]
    everything = readings + late
    want = aggregate([r[0] for r in everything], [r[1] for r in everything], [r[2] for r in everything], W)
    assert_window_equals(rows_of(revised)[0], want)
    assert revised.first[0] == 11.0  # the late reading is the earliest
    feed(windower, [(1, 999, -1.0)])
    assert windower.advance(2_200).rev.tolist() == [2]
    assert windower.statistics().revisions == 2


def test_reading_later_than_max_lateness_is_reported_too_late() -> None:
    windower = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    feed(windower, [(1, 100, 1.0)])
    windower.advance(W + MAX_LATE)
    mask = feed(windower, [(1, 200, 2.0), (1, W + MAX_LATE, 3.0)])
    assert mask.tolist() == [True, False]
    assert windower.statistics().too_late == 1
    emitted = windower.advance(10 * MAX_LATE)
    assert emitted.window_start.tolist() == [W + MAX_LATE]  # no revision of the expired window


def test_late_reading_for_a_window_never_seen_is_a_first_emission() -> None:
    windower = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    windower.advance(3_000)
    feed(windower, [(4, 1_500, 2.0)])
    emitted = windower.advance(3_000)
    assert (emitted.series.tolist(), emitted.rev.tolist()) == ([4], [0])


def test_memory_stays_bounded_by_max_lateness() -> None:
    windower = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    sensors = np.arange(20)
    for second in range(200):
        now = second * 1_000
        windower.add(sensors, np.full(20, now), np.full(20, float(second)))
        windower.advance(now)
    stats = windower.statistics()
    assert stats.retained_windows <= 20 * (MAX_LATE // W + 2)
    assert stats.open_windows <= 20 * 2
    assert stats.closed >= 20 * 190


def test_time_going_backwards_does_not_reopen_windows() -> None:
    windower = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    windower.advance(100 * W)
    assert feed(windower, [(1, 10, 1.0)]).tolist() == [True]
    windower.advance(0)  # a clock step back must not make expired windows revisable again
    assert feed(windower, [(1, 10, 1.0)]).tolist() == [True]


def test_lateness_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="allowed_lateness_ms"):
        Windower(window_ms=W, allowed_lateness_ms=5_000, max_lateness_ms=1_000)
    with pytest.raises(ValueError, match="window_ms"):
        Windower(window_ms=0)


OPERATION = st.one_of(
    st.tuples(
        st.just("add"),
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(-6_000, 1_000), st.floats(-1e3, 1e3)),
            max_size=8,
        ),
    ),
    st.tuples(st.just("advance"), st.integers(0, 3_000)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(OPERATION, max_size=25))
def test_every_emission_equals_aggregate_over_what_was_accepted(
    operations: list[tuple[str, object]],
) -> None:
    """Model check: windows, revisions and too-late flags follow from the readings alone."""
    windower = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    now: int | None = None
    accepted: dict[tuple[int, int], list[tuple[int, int, float]]] = defaultdict(list)
    last_rev: dict[tuple[int, int], int] = {}
    for kind, argument in [*operations, ("advance", 10 * MAX_LATE)]:
        if kind == "add":
            rows = [(s, t + (now or 0), v) for s, t, v in argument]  # type: ignore[attr-defined]
            mask = feed(windower, rows)
            for row, too_late in zip(rows, mask.tolist(), strict=True):
                start = row[1] // W * W
                expected = now is not None and start + W + MAX_LATE <= now
                assert too_late == expected
                if not too_late:
                    accepted[(row[0], start)].append(row)
            continue
        now = argument if now is None else max(now, argument)  # type: ignore[call-overload]
        for row in rows_of(windower.advance(now)):
            key = (int(row["series"]), int(row["window_start"]))
            assert key[1] + W + ALLOWED <= now
            assert row["rev"] == last_rev.get(key, -1) + 1
            last_rev[key] = int(row["rev"])
            seen = accepted[key]
            want = aggregate([r[0] for r in seen], [r[1] for r in seen], [r[2] for r in seen], W)
            assert_window_equals(row, want)
    assert set(last_rev) == set(accepted)  # every accepted reading ended up in a window
    assert windower.statistics().open_windows == 0


def test_lateness_is_judged_at_the_arrival_clock_not_the_last_advance() -> None:
    windower = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    feed(windower, [(1, 100, 1.0)])
    windower.advance(W + ALLOWED)
    late = windower.add(
        np.array([1, 1]), np.array([200, W + 100]), np.array([2.0, 3.0]), arrived_ms=W + MAX_LATE
    )
    assert late.tolist() == [True, False]  # window 0 can no longer be revised at W + MAX_LATE
    assert windower.advance(W + MAX_LATE).window_start.tolist() == [W]


def test_resume_keeps_windows_due_at_the_stored_clock_with_their_revisions_and_emits_nothing() -> None:
    before = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    feed(before, [(1, 100, 1.0), (2, 200, 2.0), (1, W + 100, 5.0)])
    before.advance(W + ALLOWED)
    feed(before, [(1, 300, 3.0)])
    assert before.advance(W + ALLOWED + 10).rev.tolist() == [1]

    after = Windower(window_ms=W, allowed_lateness_ms=ALLOWED, max_lateness_ms=MAX_LATE)
    feed(after, [(1, 100, 1.0), (2, 200, 2.0), (1, W + 100, 5.0), (1, 300, 3.0)])  # the replay
    after.resume(W + ALLOWED + 10, {(1, 0): 1})
    assert after.statistics().closed == 0 and after.statistics().readings == 0
    feed(after, [(1, 400, 4.0), (2, 500, 6.0)])
    revised = after.advance(W + ALLOWED + 20)
    assert revised.series.tolist() == [1, 2]
    assert revised.rev.tolist() == [2, 1]
    assert revised.count.tolist() == [3, 2]
    assert after.advance(2 * W + ALLOWED).window_start.tolist() == [W]  # open at the restart
