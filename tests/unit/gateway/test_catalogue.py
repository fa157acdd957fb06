"""The agent's catalogue resend rule (gateway.catalogue) on a real Store and Batcher with a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import Store, StoreOptions
from gateway import wire
from gateway.batcher import Batcher
from gateway.catalogue import MAX_SERIES, GatewayCatalogue, ResendRule
from gateway.config import parse_config
from gateway.sealing import Due, SealingRules
from kernel.model import Reading

KEY = Ed25519PrivateKey.generate()
T0 = 1_780_000_000_000
HOUR = 3_600_000
EPOCH_A, EPOCH_B = bytes(16), bytes(range(16))


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def series(*names: str) -> list[wire.SeriesInfo]:
    return [wire.SeriesInfo(n, "air_temperature", "Cel", 0.01, 1000) for n in names]


def run(catalogue: GatewayCatalogue, steps: list[tuple[list[wire.SeriesInfo], bytes, int]]) -> list[bool]:
    """Plan and seal one batch per step; which of them declared the catalogue."""
    declared = []
    for table, epoch, now in steps:
        plan = catalogue.plan(table, epoch, now)
        catalogue.sealed(plan, now)
        declared.append(plan.declare)
    return declared


def test_every_nth_batch_declares_and_the_first_after_the_interval() -> None:
    catalogue = GatewayCatalogue(ResendRule(every_batches=4, every_ms=6 * HOUR))
    table = series("a", "b")
    by_count = run(catalogue, [(table, EPOCH_A, T0 + n * 1000) for n in range(9)])
    assert by_count == [True, False, False, False, True, False, False, False, True]
    # a quiet gateway: one batch every 4 hours, the table goes again once 6 hours have passed
    by_time = run(catalogue, [(table, EPOCH_A, T0 + 8000 + n * 4 * HOUR) for n in range(1, 5)])
    assert by_time == [False, True, False, True]


def test_a_new_epoch_a_changed_table_and_a_clock_stepped_back_declare_at_once() -> None:
    catalogue = GatewayCatalogue(ResendRule(every_batches=100, every_ms=6 * HOUR))
    steps = [
        (series("a"), EPOCH_A, T0),
        (series("a"), EPOCH_A, T0 + 1000),
        (series("a"), EPOCH_B, T0 + 2000),  # a quarantined buffer database: a new epoch
        (series("a"), EPOCH_B, T0 + 3000),
        (series("a", "b"), EPOCH_B, T0 + 4000),  # a series appeared
        (series("a", "b"), EPOCH_B, T0 + 5000),
        (series("a", "b"), EPOCH_B, T0 - HOUR),  # NTP stepped the clock back an hour
        (series("a", "b"), EPOCH_B, T0 - HOUR + 1000),
    ]
    assert run(catalogue, steps) == [True, False, True, False, True, False, True, False]


def test_a_plan_counts_only_once_its_batch_is_sealed() -> None:
    """A seal that failed (disk full) must not make the next batch refer to a table no receiver got."""
    catalogue = GatewayCatalogue()
    first = catalogue.plan(series("a"), EPOCH_A, T0)
    assert first.declare
    assert catalogue.plan(series("a"), EPOCH_A, T0 + 1).declare  # the first was never sealed


def test_the_table_keeps_its_indexes_and_starts_over_beyond_its_size() -> None:
    catalogue = GatewayCatalogue()
    keys = [(f"s{i}", "t", "Cel") for i in range(MAX_SERIES)]
    table = catalogue.table_for(keys[:10])
    assert catalogue.table_for([keys[5], keys[10]]) is table
    assert table.find(keys[5]) == 5 and table.find(keys[10]) == 10
    catalogue.table_for(keys)
    assert len(catalogue.table.keys) == MAX_SERIES
    fresh = catalogue.table_for([("new", "t", "Cel"), keys[3]])
    assert fresh.keys == [("new", "t", "Cel"), keys[3]]


def test_new_series_join_the_table_by_quantity() -> None:
    """Series of one quantity sit side by side (their heads differ little), new ones go at the end."""
    catalogue = GatewayCatalogue()
    first = [("post-1", "air_pressure", "kPa"), ("post-1", "dew_point", "Cel"), ("post-0", "dew_point", "Cel"),
             ("post-0", "air_pressure", "kPa")]  # fmt: skip
    assert catalogue.table_for(first).keys == [first[3], first[0], first[2], first[1]]
    later = catalogue.table_for([("post-2", "dew_point", "Cel"), ("post-2", "air_pressure", "kPa"), first[1]])
    assert later.keys[4:] == [("post-2", "air_pressure", "kPa"), ("post-2", "dew_point", "Cel")]


def batcher(store: Store, clock: Clock, rule: ResendRule) -> Batcher:
    return Batcher(
        store, gateway_id="gw-test", private_key=KEY, kid=wire.kid_for(KEY.public_key()), declare=wire.SeriesInfo,
        due=Due(SealingRules(max_delay_ms=60_000, target_readings=20_000)), max_readings=50_000,
        sealed=asyncio.Event(), clock=clock, catalogue=GatewayCatalogue(rule),
    )  # fmt: skip


def test_the_agent_declares_its_catalogue_by_the_rule_and_after_every_start(tmp_path: Path) -> None:
    """Ten sensors, a batch a minute: the table travels in batches 1, 4, 7 (every third), again in
    the first batch after a restart; in between a batch names it, and every batch decodes with the
    catalogue an earlier one declared. A sensor that appears makes the next batch declare."""
    clock = Clock(T0)
    with Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store:
        b = batcher(store, clock, ResendRule(every_batches=3, every_ms=24 * HOUR))
        for minute in range(8):
            clock.now_ms = T0 + minute * 60_000
            sensors = 10 if minute < 7 else 11  # sensor s10 appears in the eighth minute
            store.submit([Reading(f"s{i}", "t", clock.now_ms, 20.0 + i, "Cel") for i in range(sensors)])
            store.flush_blocking(5)
            asyncio.run(b.seal(upto_ts_ms=None))
        b = batcher(store, clock, ResendRule(every_batches=3, every_ms=24 * HOUR))  # the agent restarted
        store.submit([Reading("s0", "t", clock.now_ms + 1000, 1.0, "Cel")])
        store.flush_blocking(5)
        asyncio.run(b.seal(upto_ts_ms=None))
        blobs = [e.blob for e in store.undelivered(limit=100)]
    known = wire.KnownCatalogues()
    batches = [known.learn(wire.verify_with_key(blob, KEY.public_key(), known.lookup)) for blob in blobs]
    assert [bool(batch.catalogue_table) for batch in batches] == [
        True, False, False, True, False, False, True, True, True,
    ]  # fmt: skip
    assert [len(batch.readings) for batch in batches] == [10] * 7 + [11, 1]
    assert batches[6].catalogue == batches[5].catalogue != batches[7].catalogue
    assert all(len(blob) <= len(blobs[0]) - 20 for blob, batch in zip(blobs, batches, strict=True)
               if not batch.catalogue_table)  # fmt: skip


def test_the_rule_is_configured_in_batching() -> None:
    config = parse_config(
        {
            "gateway_id": "gw", "key_file": "k", "state_dir": "s",
            "batching": {"catalogue_every_batches": 12, "catalogue_every_s": 1800},
        }
    )  # fmt: skip
    assert ResendRule.of(config.batching) == ResendRule(every_batches=12, every_ms=1_800_000)
    assert ResendRule.of(parse_config({"gateway_id": "gw", "key_file": "k", "state_dir": "s"}).batching) == (
        ResendRule(every_batches=96, every_ms=6 * HOUR)
    )
