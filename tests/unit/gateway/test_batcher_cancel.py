"""A seal cancelled while its worker thread encodes: the agent's stop cancels the batcher, then seals.

The real Store and Batcher; the batcher's one-batch step is wrapped to hold its first call inside the
worker thread (where the encode runs) and to count how many run at once.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from test_sealing import batcher, open_store, outbox

from gateway.sealing import SealingRules
from kernel.model import Reading

T0 = 1_780_000_000_000


async def test_the_stops_seal_waits_for_the_cancelled_one_and_every_reading_is_sealed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path / "buffer.db")
    sealer = batcher(store, SealingRules(max_delay_ms=1000, target_readings=100), None, max_readings=100)
    store.submit([Reading("aq-1", "pm10", T0 + i * 1000, float(i % 17), "ug/m3") for i in range(250)])
    store.flush_blocking(5)

    seal_next = sealer._seal_next
    entered, release = threading.Event(), threading.Event()
    running, most, lock = [0], [0], threading.Lock()

    def held_seal_next(upto_ts_ms: int | None) -> bool:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            if not entered.is_set():
                entered.set()
                release.wait(10)  # the first batch's encode is still running when the stop comes
            return seal_next(upto_ts_ms)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(sealer, "_seal_next", held_seal_next)
    first = asyncio.create_task(sealer.seal(upto_ts_ms=None))
    assert await asyncio.to_thread(entered.wait, 10)
    first.cancel()  # as the agent's stop cancels the batcher task ...
    final = asyncio.create_task(sealer.seal(upto_ts_ms=None))  # ... and seals what is left
    await asyncio.sleep(0.1)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    made = await final

    assert most[0] == 1  # never two seals at once
    assert made == 2  # the cancelled seal made the first batch, the stop's seal the other two
    batches = outbox(store)  # 250 readings, max_readings 100: three batches
    assert [b.seq for b in batches] == [1, 2, 3]
    sealed = sorted(int(ts) for b in batches for ts in b.readings.ts_ms)
    assert sealed == [T0 + i * 1000 for i in range(250)]
    store.close()
