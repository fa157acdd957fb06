"""The watchdog's judge: stuck means busy without finishing anything for the stall limit."""

from __future__ import annotations

from gateway.liveness import Liveness, Progress
from gateway.watchdog import ReadingRate, status_line


def test_an_idle_part_is_never_stuck() -> None:
    idle = Progress()
    judge = Liveness({"batcher": idle}, stall_s=10)
    assert judge.judge(0).alive
    assert judge.judge(1000).alive


def test_a_part_busy_without_progress_is_stuck_after_the_stall_limit() -> None:
    writer = Progress()
    judge = Liveness({"buffer-writer": writer}, stall_s=10)
    with writer.working():
        assert judge.judge(0).alive
        assert judge.judge(9.9).alive
        assert judge.judge(10).stuck == ("buffer-writer",)
    assert judge.judge(11).alive  # it finished: progress again


def test_beats_during_long_work_are_progress() -> None:
    batcher = Progress()
    judge = Liveness({"batcher": batcher}, stall_s=10)
    with batcher.working():
        for now in range(0, 100, 5):
            batcher.beat()  # one batch of a long backlog sealed every 5 s
            assert judge.judge(now).alive
        assert judge.judge(110).stuck == ("batcher",)


def test_only_the_stuck_part_is_named() -> None:
    writer, batcher = Progress(), Progress()
    judge = Liveness({"buffer-writer": writer, "batcher": batcher}, stall_s=1)
    with batcher.working():
        judge.judge(0)
        assert judge.judge(2).stuck == ("batcher",)


def test_status_line_says_rate_backlog_and_uplink() -> None:
    rate = ReadingRate()
    assert rate.observe(100, now=0.0) == 0.0
    assert rate.observe(400, now=30.0) == 600.0
    assert status_line(600.0, None, "connected") == "600 readings/min, backlog unknown, uplink connected"
