"""kernel.threads.in_thread: a cancelled caller does not go on while its thread still works."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kernel.threads import in_thread


async def test_the_result_and_the_error_of_the_function_come_back() -> None:
    assert await in_thread(lambda a, b: a + b, 2, b=3) == 5

    def fails() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await in_thread(fails)


async def test_a_cancelled_caller_waits_for_the_thread_even_when_cancelled_again() -> None:
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()

    def work() -> str:
        entered.set()
        release.wait(10)
        returned.set()
        return "done"

    caller = asyncio.create_task(in_thread(work))
    assert await asyncio.to_thread(entered.wait, 10)
    caller.cancel()
    await asyncio.sleep(0.05)
    caller.cancel()  # a second cancellation does not end the wait either
    await asyncio.sleep(0.05)
    assert not caller.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert returned.is_set()  # the thread had returned when the cancellation arrived


async def test_what_the_thread_raises_after_the_cancellation_is_dropped_for_the_cancellation() -> None:
    entered, release = threading.Event(), threading.Event()

    def fails_late() -> None:
        entered.set()
        release.wait(10)
        raise OSError("disk gone")

    caller = asyncio.create_task(in_thread(fails_late))
    assert await asyncio.to_thread(entered.wait, 10)
    caller.cancel()
    await asyncio.sleep(0.02)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
