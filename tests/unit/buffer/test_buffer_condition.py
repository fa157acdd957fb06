"""The writer's log lines go through the kernel's retry series, with a full disk's warnings rate-limited."""

from __future__ import annotations

from structlog.testing import capture_logs

from buffer.condition import DISK_FULL, LOSS_REPORT_EVERY_S, STORAGE_ERROR, StorageCondition
from kernel.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(logs: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(e["log_level"], e["event"]) for e in logs]


def test_a_disk_that_flips_between_full_and_not_warns_once_per_ten_minutes() -> None:
    clock = Clock()
    condition = StorageCondition("drop_oldest", Backoff(jitter=0.0), clock)
    full = OSError("database or disk is full")
    with capture_logs() as logs:
        for _ in range(3):  # full, then a commit succeeds, within a minute each time
            condition.failed(DISK_FULL, full)
            condition.committed()
            clock.now += 60
        clock.now += LOSS_REPORT_EVERY_S
        condition.failed(DISK_FULL, full)
    assert [level for level, _ in lines(logs)] == [
        "warning",
        "info",
        "debug",
        "debug",
        "debug",
        "debug",
        "warning",
    ]
    assert lines(logs)[0][1] == "buffer.disk_full.failed"
    assert lines(logs)[1] == ("info", "buffer.disk_full.recovered")


def test_a_storage_error_series_paces_the_writer_with_its_backoff() -> None:
    condition = StorageCondition("drop_oldest", Backoff(initial_s=0.05, cap_s=5.0, jitter=0.0), Clock())
    with capture_logs() as logs:
        delays = [condition.failed(STORAGE_ERROR, OSError("EIO")) for _ in range(3)]
        condition.committed()
        again = condition.failed(STORAGE_ERROR, OSError("EIO"))
    assert delays == [0.05, 0.1, 0.2] and again == 0.05  # the backoff starts over after a success
    # the second series comes within ten minutes of the first one's warning: quiet, as for a full disk
    assert [level for level, _ in lines(logs)] == ["warning", "debug", "debug", "info", "debug"]
    assert all(e["retry_in_s"] is not None for e in logs if e["log_level"] != "info")
