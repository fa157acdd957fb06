"""The latency budget: when the batcher seals (gateway.sealing), on a real Store with a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import Store, StoreOptions
from gateway import wire
from gateway.batcher import Batcher
from gateway.config import parse_config
from gateway.sealing import Due, SealingRules, Thresholds
from gateway.window_routing import Windowing, WindowPolicy
from kernel.errors import ConfigError
from kernel.model import Reading

KEY = Ed25519PrivateKey.generate()
T0 = 1_780_000_000_000
MIN = 60_000


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def batcher(
    store: Store,
    rules: SealingRules,
    clock: Clock | None,
    windowing: Windowing | None = None,
    *,
    sealed: asyncio.Event | None = None,
    max_readings: int = 50_000,
) -> Batcher:
    """A batcher signing with KEY (test_delivery.py shares it, with the event its uplink waits on)."""
    return Batcher(
        store,
        gateway_id="gw-test",
        private_key=KEY,
        kid=wire.kid_for(KEY.public_key()),
        declare=wire.SeriesInfo,
        due=Due(rules),
        max_readings=max_readings,
        sealed=sealed or asyncio.Event(),
        windowing=windowing,
        **({} if clock is None else {"clock": clock}),
    )


def outbox(store: Store) -> list[wire.Batch]:
    known = wire.KnownCatalogues()  # the batches after the first name the catalogue it declared
    return [
        known.learn(wire.verify_with_key(e.blob, KEY.public_key(), known.lookup))
        for e in store.undelivered(limit=10_000)
    ]


def open_store(path: Path) -> Store:
    return Store.open(path, StoreOptions(commit_interval_s=0.01))


async def play(store: Store, b: Batcher, clock: Clock, arrivals: list[Reading]) -> None:
    """Readings arrive at their timestamps (some late); the batcher seals whenever it says it must."""
    pending = sorted(arrivals, key=lambda r: r.ts_ms + (120_000 if r.sensor == "lora-1" else 0))
    while pending or b.quiet_for() is not None:
        due = b._due.deadline_ms()
        arrival = pending[0].ts_ms + (120_000 if pending[0].sensor == "lora-1" else 0) if pending else None
        if arrival is not None and (due is None or arrival < due):
            clock.now_ms = max(clock.now_ms, arrival)
            reading = pending.pop(0)
            store.submit([reading])
            b.note(reading)
        else:
            assert due is not None
            clock.now_ms = max(clock.now_ms, due)
            await b.seal_due()


def test_no_reading_waits_longer_than_its_budget(tmp_path: Path) -> None:
    """Three sensors over three hours, one with its own 1-minute budget and one (LoRa) whose readings
    arrive two minutes late: every reading is sealed within its budget, counted from its timestamp,
    and the batches come once per budget, not once per reading."""
    rng = random.Random(7)
    readings = []
    for sensor, interval in (("weather-1", MIN), ("quay-level-1", 20_000), ("lora-1", 10 * MIN)):
        ts = T0 + rng.randrange(interval)
        while ts < T0 + 180 * MIN:
            readings.append(Reading(sensor, "level", ts, rng.uniform(0, 1), "m"))
            ts += interval + rng.randrange(-2_000, 2_000)
    rules = SealingRules(max_delay_ms=15 * MIN, target_readings=20_000, sensor_delay_ms={"quay-level-1": MIN})
    with open_store(tmp_path / "buffer.db") as store:
        b = batcher(store, rules, Clock(T0))
        asyncio.run(play(store, b, b._clock, readings))  # type: ignore[arg-type]
        batches = outbox(store)
    sealed = 0
    for batch in batches:
        for s, ts in zip(batch.readings.series.tolist(), batch.readings.ts_ms.tolist(), strict=True):
            budget = MIN if batch.series[s].sensor == "quay-level-1" else 15 * MIN
            assert batch.created_ms - ts <= budget, (batch.series[s].sensor, batch.created_ms - ts)
            sealed += 1
    assert sealed == len(readings)  # none lost, none sealed twice
    # the quay sensor's 1-minute budget sets the pace: about one batch a minute, not one per reading
    assert len(batches) <= 180 * 1.1
    assert len(batches) < len(readings) / 3


def test_a_gateway_budget_seals_once_per_budget(tmp_path: Path) -> None:
    """Ten readings a minute with a 15-minute budget: a batch every 15 minutes, each holding ~150."""
    readings = [
        Reading(f"s{i}", "t", T0 + n * MIN + i * 1000, float(n), "Cel") for n in range(60) for i in range(10)
    ]
    with open_store(tmp_path / "buffer.db") as store:
        b = batcher(store, SealingRules(max_delay_ms=15 * MIN, target_readings=20_000), Clock(T0))
        asyncio.run(play(store, b, b._clock, readings))  # type: ignore[arg-type]
        batches = outbox(store)
    assert len(batches) in (4, 5)
    assert sum(len(batch.readings) for batch in batches) == 600


def test_a_reading_past_its_threshold_is_sealed_at_once(tmp_path: Path) -> None:
    """A water level above 1.2 m does not wait for the 15-minute budget: it is sealed on arrival,
    together with everything that waited; a level below it waits."""
    rules = SealingRules(
        max_delay_ms=15 * MIN,
        target_readings=20_000,
        thresholds={("quay-1", "water_level"): Thresholds(above=1.2)},
    )
    clock = Clock(T0)
    with open_store(tmp_path / "buffer.db") as store:
        b = batcher(store, rules, clock)

        async def scenario() -> None:
            for n, level in enumerate((0.8, 0.9, 1.1)):
                clock.now_ms = T0 + n * 1000
                reading = Reading("quay-1", "water_level", clock.now_ms, level, "m")
                store.submit([reading])
                b.note(reading)
            assert b.quiet_for() == 900 - 2 - 2  # the budget of the first, less the send allowance
            clock.now_ms = T0 + 5000
            storm = Reading("quay-1", "water_level", clock.now_ms, 1.35, "m")
            store.submit([storm])
            b.note(storm)
            assert b.quiet_for() == 0
            await b.seal_due()

        asyncio.run(scenario())
        (batch,) = outbox(store)
    assert batch.readings.value.tolist() == [0.8, 0.9, 1.1, 1.35]
    assert batch.created_ms == T0 + 5000
    assert b._due.immediate == 1


def test_a_closed_window_is_sent_within_the_budget(tmp_path: Path) -> None:
    """A windows-only sensor: its raw readings set no deadline, its window must leave by closing + budget."""
    policy = WindowPolicy(window_ms=10 * MIN, allowed_lateness_ms=10_000, max_lateness_ms=60 * MIN)
    rules = SealingRules(max_delay_ms=5 * MIN, target_readings=20_000, windows={"dust-1": policy})
    clock = Clock(T0)
    with open_store(tmp_path / "buffer.db") as store:
        b = batcher(store, rules, clock, Windowing({"dust-1": policy}))
        start = T0 - T0 % (10 * MIN)
        readings = [Reading("dust-1", "pm10", start + n * 30_000, float(n), "ug/m3") for n in range(20)]
        asyncio.run(play(store, b, clock, readings))
        batches = outbox(store)
    windows = [w for batch in batches for w in batch.windows.window_start.tolist()]
    assert windows == [start]
    closes = start + 10 * MIN + 10_000
    (carrying,) = [batch for batch in batches if len(batch.windows)]
    assert closes <= carrying.created_ms <= closes + 5 * MIN
    assert carrying.windows.count.tolist() == [20]
    assert all(len(batch.readings) == 0 for batch in batches)  # windows only: nothing raw


def test_an_upgrade_sends_the_old_outbox_unchanged_and_seals_the_backlog_at_once(tmp_path: Path) -> None:
    """Batches sealed by the slice-based agent stay in the outbox byte for byte, in seq order; readings
    it committed but never sealed go out as soon as the new batcher starts, whatever their budget."""
    db = tmp_path / "buffer.db"
    with open_store(db) as store:
        old = batcher(store, SealingRules(max_delay_ms=5_000, target_readings=50_000), Clock(T0))
        for n in range(2):
            store.submit([Reading("weather-1", "t", T0 + n * 5_000 + i, float(i), "Cel") for i in range(3)])
            store.flush_blocking(5)
            asyncio.run(old.seal(upto_ts_ms=None))
        store.submit([Reading("weather-1", "t", T0 + 20_000, 9.0, "Cel")])
        store.flush_blocking(5)
        before = [(e.seq, e.blob) for e in store.undelivered(limit=10)]
    config = parse_config(
        {"gateway_id": "gw", "key_file": "k", "state_dir": "s", "batching": {"slice_s": 5.0}}
    )  # an old config file still parses: slice_s is the budget
    assert config.batching.budget_s == 5.0
    with open_store(db) as store:
        new = batcher(store, SealingRules(max_delay_ms=15 * MIN, target_readings=20_000), Clock(T0 + 60_000))

        async def start() -> None:
            task = asyncio.create_task(new.run())
            while len(store.undelivered(limit=10)) < 3:
                await asyncio.sleep(0.01)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(asyncio.wait_for(start(), 10))
        after = store.undelivered(limit=10)
    assert [(e.seq, e.blob) for e in after[:2]] == before
    assert after[2].seq == 3
    assert wire.verify_with_key(after[2].blob, KEY.public_key()).readings.value.tolist() == [9.0]


def test_slice_s_and_max_delay_s_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="slice_s is deprecated"):
        parse_config(
            {
                "gateway_id": "gw",
                "key_file": "k",
                "state_dir": "s",
                "batching": {"slice_s": 5, "max_delay_s": 60},
            }
        )


def test_sensor_budgets_and_thresholds_come_from_the_config() -> None:
    config = parse_config(
        {
            "gateway_id": "gw",
            "key_file": "k",
            "state_dir": "s",
            "batching": {"max_delay_s": 900},
            "sensors": [
                {
                    "id": "quay-1",
                    "driver": "serial",
                    "max_delay_s": 60,
                    "send_immediately_above": {"water_level": 1.2},
                    "send_immediately_below": {"water_level": -0.5},
                    "serial": {"port": "/dev/null"},
                }
            ],
        }
    )
    rules = SealingRules.of(config)
    assert rules.max_delay_ms == 900_000
    assert rules.budget_ms("quay-1") == 58_000  # 5 % kept for sending, at most 2 s
    assert rules.budget_ms("other") == 900_000 - 2_000
    assert rules.thresholds[("quay-1", "water_level")] == Thresholds(above=1.2, below=-0.5)


def test_a_wall_clock_stepped_back_moves_the_deadlines_back() -> None:
    """NTP steps a gateway's clock back an hour: a reading noted before still leaves within its budget
    (plus at most the batcher's look at the clock, CLOCK_LOOK_S), not an hour later."""
    due = Due(SealingRules(max_delay_ms=15 * MIN, target_readings=20_000))
    due.note(Reading("s1", "t", T0, 1.0, "Cel"), T0)
    assert due.deadline_ms() == T0 + 15 * MIN - 2_000
    due.observe(T0 + MIN - 60 * MIN)  # a minute later the clock reads an hour less: a 59-minute step
    assert due.deadline_ms() == T0 + 15 * MIN - 2_000 - 59 * MIN
    due.observe(T0 + 2 * MIN - 60 * MIN)  # time going on is no step
    assert due.deadline_ms() == T0 + 15 * MIN - 2_000 - 59 * MIN
