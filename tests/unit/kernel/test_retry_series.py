"""The retry series: WARNING once per outage, DEBUG for the repeats, one INFO on recovery, capped backoff."""

from __future__ import annotations

from typing import Any

from kernel.backoff import Backoff
from kernel.retry import RetryEvents, RetrySeries


class Journal:
    """Every line at every level, in order (the agent's structlog set-up drops DEBUG; this keeps it)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **facts: Any) -> None:
        self.lines.append(("warning", event, facts))

    def info(self, event: str, **facts: Any) -> None:
        self.lines.append(("info", event, facts))

    def debug(self, event: str, **facts: Any) -> None:
        self.lines.append(("debug", event, facts))

    def events(self) -> list[tuple[str, str]]:
        return [(level, event) for level, event, _ in self.lines]


def _series(journal: Journal) -> RetrySeries:
    backoff = Backoff(initial_s=1.0, cap_s=4.0, jitter=0.0)
    return RetrySeries(journal, "uplink.broker", backoff, host="broker.local")


def test_an_outage_warns_once_repeats_at_debug_and_recovers_at_info() -> None:
    journal = Journal()
    series = _series(journal)
    delays = [series.failed(OSError("refused")) for _ in range(4)]
    assert series.succeeded() is True
    assert delays == [1.0, 2.0, 4.0, 4.0]
    assert journal.events() == [
        ("warning", "uplink.broker.failed"),
        ("debug", "uplink.broker.failed_again"),
        ("debug", "uplink.broker.failed_again"),
        ("debug", "uplink.broker.failed_again"),
        ("info", "uplink.broker.recovered"),
    ]
    assert journal.lines[0][2] == {"host": "broker.local", "error": "refused", "retry_in_s": 1.0}


def test_a_second_outage_warns_again_and_starts_from_the_first_delay() -> None:
    journal = Journal()
    series = _series(journal)
    series.failed(OSError("one"))
    series.failed(OSError("two"))
    series.succeeded()
    assert series.failed(OSError("three")) == 1.0
    assert journal.events()[-1] == ("warning", "uplink.broker.failed")


def test_success_without_failures_logs_nothing() -> None:
    journal = Journal()
    series = RetrySeries(journal, RetryEvents("task failed", "task failed again", "task recovered"))
    assert series.succeeded() is False
    assert journal.lines == []
    assert series.failures == 0 and not series.failing


def test_a_loss_reported_by_the_caller_makes_the_next_success_a_recovery() -> None:
    journal = Journal()  # a Modbus bus that dropped (its own WARNING) and reopened on the first attempt
    assert _series(journal).succeeded(after_loss=True, attempts=1) is True
    assert journal.lines == [("info", "uplink.broker.recovered", {"host": "broker.local", "attempts": 1})]


def test_a_quiet_series_logs_its_failure_and_its_recovery_at_debug() -> None:
    # the caller warned about this kind of trouble a moment ago (a disk flipping between full and not)
    journal = Journal()
    series = _series(journal)
    assert series.failed(OSError("full"), quiet=True) == 1.0
    series.failed(OSError("full"))
    assert series.succeeded() is True
    assert journal.events() == [
        ("debug", "uplink.broker.failed"),
        ("debug", "uplink.broker.failed_again"),
        ("debug", "uplink.broker.recovered"),
    ]
