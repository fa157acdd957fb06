"""Windows in the agent's batches: closing at the watermark, revisions, too-late readings, restarts.

A real Store on disk and the real wire format; the batcher's clock is a fake the test moves.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import Store, StoreOptions
from gateway import wire
from gateway.aggregation import aggregate
from gateway.batcher import Batcher
from gateway.sealing import Due, SealingRules
from gateway.window_routing import Windowing, WindowPolicy
from kernel.model import Quality, Reading

W = 10_000  # 10-s windows
ALLOWED = 2_000
MAX_LATE = 60_000
T0 = 1_780_000_000_000  # a window start (multiple of W)
KEY = Ed25519PrivateKey.generate()


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class Gateway:
    """A store and a batcher on one database file, reopened like the agent after a restart."""

    def __init__(self, db: Path, policies: dict[str, WindowPolicy], clock: Clock) -> None:
        self.db, self.policies, self.clock = db, policies, clock
        self.store = Store.open(db, StoreOptions(commit_interval_s=0.01))
        self.batcher = self._batcher()
        self.delivered_up_to = 0
        self.catalogues = wire.KnownCatalogues()

    def _batcher(self) -> Batcher:
        return Batcher(
            self.store,
            gateway_id="gw-test",
            private_key=KEY,
            kid=wire.kid_for(KEY.public_key()),
            declare=wire.SeriesInfo,
            due=Due(SealingRules(max_delay_ms=1000, target_readings=50_000)),
            max_readings=50_000,
            sealed=asyncio.Event(),
            windowing=Windowing(self.policies),
            clock=self.clock,
        )

    def add(self, *readings: tuple[str, int, float]) -> None:
        self.store.submit([Reading(sensor, "pm10", ts, value, "ug/m3") for sensor, ts, value in readings])
        self.store.flush_blocking(5)

    def seal(self) -> list[wire.Batch]:
        """Seal what is due at the clock; return the batches made, decoded."""
        asyncio.run(self.batcher.seal(upto_ts_ms=None))
        new = [e for e in self.store.undelivered(limit=1000) if e.seq > self.delivered_up_to]
        for entry in new:
            self.delivered_up_to = entry.seq
        known = self.catalogues  # a batch may name the catalogue an earlier one declared
        return [known.learn(wire.verify_with_key(e.blob, KEY.public_key(), known.lookup)) for e in new]

    def restart(self) -> None:
        self.store.close()
        self.store = Store.open(self.db, StoreOptions(commit_interval_s=0.01))
        self.batcher = self._batcher()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def gateway(tmp_path: Path, clock: Clock) -> Iterator[Gateway]:
    policies = {
        "dust": WindowPolicy(W, ALLOWED, MAX_LATE, upload="windows"),
        "both": WindowPolicy(W, ALLOWED, MAX_LATE, upload="both", statistics=frozenset({"mean", "max"})),
    }
    g = Gateway(tmp_path / "buffer.db", policies, clock)
    yield g
    g.store.close()


def windows_of(batches: list[wire.Batch]) -> list[dict[str, object]]:
    rows = []
    for batch in batches:
        w = batch.windows
        for i in range(len(w)):
            info = batch.series[int(w.series[i])]
            rows.append(
                {
                    "sensor": info.sensor,
                    "start": int(w.window_start[i]),
                    "rev": int(w.rev[i]),
                    "count": int(w.count[i]),
                    "mean": float(w.mean[i]),
                    "min": float(w.min[i]),
                    "max": float(w.max[i]),
                    "std": float(w.std[i]),
                }
            )
    return rows


def raw_of(batches: list[wire.Batch]) -> list[tuple[str, int, float, Quality]]:
    return [(r.sensor, r.ts_ms, r.value, r.quality) for b in batches for r in b.iter_readings()]


def test_a_window_travels_once_it_closes_and_windows_only_readings_do_not_travel_raw(
    gateway: Gateway, clock: Clock
) -> None:
    gateway.add(("dust", T0 + 1_000, 10.0), ("dust", T0 + 5_000, 20.0), ("plain", T0 + 2_000, 1.5))
    clock.now_ms = T0 + W + ALLOWED - 1
    first = gateway.seal()
    assert windows_of(first) == []
    assert raw_of(first) == [("plain", T0 + 2_000, 1.5, Quality.OK)]
    clock.now_ms = T0 + W + ALLOWED
    (closing,) = gateway.seal()  # a batch of windows only
    assert len(closing.readings) == 0
    (window,) = windows_of([closing])
    assert window == {"sensor": "dust", "start": T0, "rev": 0, "count": 2, "mean": 15.0, "min": 10.0,
                      "max": 20.0, "std": 5.0}  # fmt: skip
    assert gateway.seal() == []  # nothing new: no empty batches


def test_both_uploads_raw_and_windows_with_only_the_chosen_statistics(gateway: Gateway, clock: Clock) -> None:
    gateway.add(("both", T0 + 1_000, 3.0), ("both", T0 + 2_000, 5.0))
    clock.now_ms = T0 + W + ALLOWED
    batches = gateway.seal()
    assert [r[:3] for r in raw_of(batches)] == [("both", T0 + 1_000, 3.0), ("both", T0 + 2_000, 5.0)]
    (window,) = windows_of(batches)
    assert (window["mean"], window["max"], window["count"]) == (4.0, 5.0, 2)
    assert math.isnan(float(window["min"])) and math.isnan(float(window["std"]))  # not configured


def test_a_late_reading_revises_its_window_with_the_statistics_of_all_its_readings(
    gateway: Gateway, clock: Clock
) -> None:
    gateway.add(("dust", T0 + 1_000, 10.0), ("dust", T0 + 2_000, 20.0))
    clock.now_ms = T0 + W + ALLOWED
    assert [w["rev"] for w in windows_of(gateway.seal())] == [0]
    clock.now_ms += 5_000
    gateway.add(("dust", T0 + 9_000, 60.0))
    (revised,) = windows_of(gateway.seal())
    assert (revised["rev"], revised["count"], revised["mean"]) == (1, 3, 30.0)
    assert revised["max"] == 60.0


def test_a_reading_later_than_max_lateness_travels_raw_flagged_late(gateway: Gateway, clock: Clock) -> None:
    gateway.add(("dust", T0 + 1_000, 10.0))
    clock.now_ms = T0 + W + ALLOWED
    gateway.seal()
    clock.now_ms = T0 + W + MAX_LATE + 1
    gateway.add(("dust", T0 + 3_000, 99.0))
    batches = gateway.seal()
    assert windows_of(batches) == []
    assert raw_of(batches) == [("dust", T0 + 3_000, 99.0, Quality.LATE)]
    assert gateway.batcher.statistics().windowing is not None
    assert gateway.batcher.statistics().windowing.too_late == 1  # type: ignore[union-attr]


def test_after_a_restart_a_late_reading_revises_the_window_with_everything_seen_before(
    gateway: Gateway, clock: Clock
) -> None:
    gateway.add(("dust", T0 + 1_000, 10.0), ("dust", T0 + 2_000, 20.0), ("dust", T0 + W + 500, 7.0))
    clock.now_ms = T0 + W + ALLOWED
    assert [(w["start"], w["rev"]) for w in windows_of(gateway.seal())] == [(T0, 0)]
    clock.now_ms += 1_000
    gateway.add(("dust", T0 + 3_000, 30.0))
    assert [(w["rev"], w["count"]) for w in windows_of(gateway.seal())] == [(1, 3)]

    gateway.restart()
    clock.now_ms += 1_000
    gateway.add(("dust", T0 + 4_000, 40.0))
    (revised,) = windows_of(gateway.seal())
    assert (revised["start"], revised["rev"], revised["count"], revised["mean"]) == (T0, 2, 4, 25.0)

    clock.now_ms = T0 + 2 * W + ALLOWED  # the second window was open at the restart: it closes now, once
    (second,) = windows_of(gateway.seal())
    assert (second["start"], second["rev"], second["count"], second["mean"]) == (T0 + W, 0, 1, 7.0)


def test_a_failed_seal_does_not_leave_its_readings_in_the_windows(
    gateway: Gateway, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.add(("dust", T0 + 1_000, 10.0))
    clock.now_ms = T0 + W + ALLOWED

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    with monkeypatch.context() as patch:
        patch.setattr(gateway.store, "seal_batch", refuse)
        with pytest.raises(OSError, match="disk gone"):
            gateway.seal()
    (window,) = windows_of(gateway.seal())  # rebuilt from the store: the reading counts once
    assert (window["rev"], window["count"], window["mean"]) == (0, 1, 10.0)


def test_windows_equal_aggregate_over_every_reading(gateway: Gateway, clock: Clock) -> None:
    rng = np.random.default_rng(7)
    ts = T0 + rng.integers(0, 5 * W, 400)
    values = rng.normal(20.0, 3.0, 400).round(1)
    batches = []
    for chunk in np.array_split(np.argsort(ts), 8):  # arrival in time order, several seals
        gateway.add(*(("dust", int(ts[i]), float(values[i])) for i in chunk))
        clock.now_ms = max(clock.now_ms, int(ts[chunk].max()))
        batches += gateway.seal()
    clock.now_ms = T0 + 6 * W + ALLOWED
    batches += gateway.seal()
    latest: dict[int, dict[str, object]] = {}
    for row in windows_of(batches):
        assert int(row["start"]) not in latest or row["rev"] == latest[int(row["start"])]["rev"] + 1  # type: ignore[operator]
        latest[int(row["start"])] = row  # type: ignore[call-overload]
    want = aggregate(np.zeros(400, np.int64), ts, values, W)
    assert sorted(latest) == want.window_start.tolist()
    for i, start in enumerate(want.window_start.tolist()):
        assert latest[start]["count"] == int(want.count[i])
        assert latest[start]["mean"] == pytest.approx(float(want.mean[i]), rel=1e-12)
        assert latest[start]["std"] == pytest.approx(float(want.std[i]), rel=1e-9)


def test_a_bit_rotten_batched_chunk_is_skipped_when_the_windows_are_rebuilt(
    gateway: Gateway, clock: Clock
) -> None:
    gateway.add(("dust", T0 + 1_000, 10.0))
    gateway.add(("dust", T0 + 2_000, 20.0))  # a second group commit: a second chunk
    clock.now_ms = T0 + W + ALLOWED
    assert [w["count"] for w in windows_of(gateway.seal())] == [2]
    gateway.store.close()
    with sqlite3.connect(gateway.db) as db:
        db.execute("UPDATE chunk SET data = zeroblob(length(data)) WHERE id = (SELECT min(id) FROM chunk)")
    gateway.restart()
    clock.now_ms += 1_000
    gateway.add(("dust", T0 + 3_000, 30.0))
    (revised,) = windows_of(gateway.seal())  # rebuilt from what can still be read
    assert (revised["rev"], revised["count"], revised["mean"]) == (1, 2, 25.0)
