"""The retry series: WARNING once per outage, DEBUG for the repeats, one INFO on recovery, capped backoff."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from kernel.backoff import Backoff
from kernel.retry import RetryEvents, RetrySeries


def _series() -> RetrySeries:
    backoff = Backoff(initial_s=1.0, cap_s=4.0, jitter=0.0)
    return RetrySeries(structlog.get_logger("test"), "uplink.broker", backoff, host="broker.local")


def test_an_outage_warns_once_repeats_at_debug_and_recovers_at_info() -> None:
    series = _series()
    with capture_logs() as logs:
        delays = [series.failed(OSError("refused")) for _ in range(4)]
        assert series.succeeded() is True
    assert delays == [1.0, 2.0, 4.0, 4.0]
    assert [(e["log_level"], e["event"]) for e in logs] == [
        ("warning", "uplink.broker.failed"),
        ("debug", "uplink.broker.failed_again"),
        ("debug", "uplink.broker.failed_again"),
        ("debug", "uplink.broker.failed_again"),
        ("info", "uplink.broker.recovered"),
    ]
    assert logs[0]["host"] == "broker.local" and logs[0]["error"] == "refused"
    assert logs[0]["retry_in_s"] == 1.0


def test_a_second_outage_warns_again_and_starts_from_the_first_delay() -> None:
    series = _series()
    series.failed(OSError("one"))
    series.failed(OSError("two"))
    series.succeeded()
    with capture_logs() as logs:
        assert series.failed(OSError("three")) == 1.0
    assert [(e["log_level"], e["event"]) for e in logs] == [("warning", "uplink.broker.failed")]


def test_success_without_failures_logs_nothing() -> None:
    series = RetrySeries(
        structlog.get_logger("test"), RetryEvents("task failed", "task failed again", "task recovered")
    )
    with capture_logs() as logs:
        assert series.succeeded() is False
    assert logs == []
    assert series.failures == 0 and not series.failing


def test_a_loss_reported_by_the_caller_makes_the_next_success_a_recovery() -> None:
    series = _series()  # a Modbus bus that dropped (its own WARNING) and reopened on the first attempt
    with capture_logs() as logs:
        assert series.succeeded(after_loss=True, attempts=1) is True
    assert [(e["log_level"], e["event"], e["attempts"]) for e in logs] == [
        ("info", "uplink.broker.recovered", 1)
    ]
