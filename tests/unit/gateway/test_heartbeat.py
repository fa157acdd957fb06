"""The heartbeat: a batch with an agent.heartbeat event after uplink.heartbeat_s without a sealed batch
(real Store, fake clock), none while batches flow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from buffer import Store
from gateway.heartbeat import KIND, Heartbeat, Vitals
from gateway.sealing import SealingRules
from kernel.model import Reading
from tests.unit.gateway.test_sealing import MIN, T0, Clock, batcher, open_store, outbox

HOUR = 60 * MIN
VITALS = Vitals(
    uptime_s=1, sensors_ok=2, sensors_stale=1, backlog_readings=0, outbox_batches=0,
    today_bytes=1_234, yesterday_bytes=5_678, last_30_days_bytes=99_000,
)  # fmt: skip
RULES = SealingRules(max_delay_ms=15 * MIN, target_readings=10_000)


async def advance(step: Callable[[], Awaitable[float | None]], clock: Clock, to_ms: int) -> None:
    """Let the batcher (its `step`) act at every moment it asks to be woken, up to `to_ms`."""
    while True:
        wait_s = await step()
        if wait_s is None:
            continue
        if clock.now_ms >= to_ms:
            return
        clock.now_ms = min(to_ms, clock.now_ms + max(1, round(wait_s * 1000)))


def heartbeats(store: Store) -> list[tuple[int, dict[str, int]]]:
    return [
        (len(b.readings.ts_ms), json.loads(e.detail))
        for b in outbox(store)
        for e in b.events
        if e.kind == KIND
    ]


def test_a_silent_gateway_seals_a_heartbeat_after_heartbeat_s(tmp_path: Path) -> None:
    clock = Clock(T0)
    with open_store(tmp_path / "buffer.db") as store:
        b = batcher(store, RULES, clock)
        b._heartbeat = Heartbeat(6 * HOUR, lambda: VITALS)
        b.start()
        asyncio.run(advance(b.step, clock, T0 + 6 * HOUR - 1))
        assert store.undelivered() == []  # silence, not yet long enough
        asyncio.run(advance(b.step, clock, T0 + 13 * HOUR))
        beats = heartbeats(store)
        assert [readings for readings, _ in beats] == [0, 0]  # at 6 h and 12 h, no readings
        assert beats[0][1]["sensors_stale"] == 1 and beats[0][1]["today_bytes"] == 1_234
        assert [b.created_ms for b in outbox(store)] == [T0 + 6 * HOUR, T0 + 12 * HOUR]
        assert b.statistics().heartbeats == 2


def test_no_heartbeat_while_batches_flow_and_one_period_after_the_last(tmp_path: Path) -> None:
    clock = Clock(T0)
    with open_store(tmp_path / "buffer.db") as store:
        b = batcher(store, RULES, clock)
        b._heartbeat = Heartbeat(HOUR, lambda: VITALS)

        async def day() -> None:
            b.start()
            for minute in range(0, 24 * 60, 10):  # a reading every 10 min, sealed every 15 min
                await advance(b.step, clock, T0 + minute * MIN)
                reading = Reading("dust-1", "pm10", clock.now_ms, 12.0, "ug/m3")
                store.submit([reading])
                b.note(reading)
            await advance(b.step, clock, T0 + 25 * HOUR + 30 * MIN)

        asyncio.run(day())
        batches = outbox(store)
        assert len(batches) > 60 and len(heartbeats(store)) == 1
        last_readings = max(b.created_ms for b in batches if len(b.readings.ts_ms))
        assert [b.created_ms for b in batches if b.events] == [last_readings + HOUR]


def test_the_silence_goes_on_across_restarts(tmp_path: Path) -> None:
    """An idle agent restarting every hour (a crash loop) still sends its heartbeat every period: the
    silence counts from the last batch the store sealed, not from each start."""
    clock = Clock(T0)
    with open_store(tmp_path / "buffer.db") as store:
        first = batcher(store, RULES, clock)
        first._heartbeat = Heartbeat(6 * HOUR, lambda: VITALS)
        first.start(store.last_sealed_ms())
        asyncio.run(advance(first.step, clock, T0 + 6 * HOUR))
        assert store.last_sealed_ms() == T0 + 6 * HOUR and len(heartbeats(store)) == 1
        for hour in range(7, 14):  # a new agent every hour
            again = batcher(store, RULES, clock)
            again._heartbeat = Heartbeat(6 * HOUR, lambda: VITALS)
            again.start(store.last_sealed_ms())
            asyncio.run(advance(again.step, clock, T0 + hour * HOUR))
        assert [b.created_ms for b in outbox(store)] == [T0 + 6 * HOUR, T0 + 12 * HOUR]
