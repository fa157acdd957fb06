"""A failing task is restarted with backoff and never takes its siblings down."""

from __future__ import annotations

import asyncio

from gateway.supervisor import Supervised
from kernel.backoff import Backoff


async def test_failing_task_restarts_while_sibling_keeps_running() -> None:
    attempts = 0
    ticks = 0

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        raise OSError("port vanished")

    async def steady() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    bad = Supervised("flaky", flaky, Backoff(initial_s=0.01, cap_s=0.02, jitter=0))
    good = Supervised("steady", steady)
    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(bad.run()), tasks.create_task(good.run())]
        await asyncio.sleep(0.3)
        for task in running:
            task.cancel()
    assert attempts >= 5
    assert ticks >= 10
    stats = bad.statistics()
    assert stats.failing and stats.restarts == attempts
    assert stats.last_error == "OSError: port vanished"
    assert good.statistics().restarts == 0


def test_backoff_is_capped_and_resets() -> None:
    backoff = Backoff(initial_s=1, cap_s=8, factor=2, jitter=0)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    backoff.reset()
    assert backoff.next_delay() == 1
