"""The uplink's per-day traffic totals survive a restart: stored in the buffer database, shown by status."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from rich.console import Console

from buffer import Store, StoreOptions
from buffer.schema import SCHEMA_VERSION
from gateway.agent import _save_traffic
from gateway.cli.views import render_status
from gateway.control import to_jsonable
from gateway.metrics import render
from gateway.uplink.traffic import DAY_MS, KEEP_DAYS, Traffic
from kernel.wallclock import now_ms

FAST = StoreOptions(commit_interval_s=0.01)
DAY1 = 20_600 * DAY_MS


def _run(db: Path, counts: list[tuple[int, int, int]]) -> Traffic:
    """One agent run: restore, count (ms, bytes sent, readings), store at shutdown."""
    with Store.open(db, FAST) as store:
        traffic = Traffic()
        traffic.restore(store.traffic_days(traffic.keep_from(counts[0][0])))
        for ms, sent, readings in counts:
            traffic.application(ms, sent=sent, received=10, readings=readings)
        store.save_traffic_days(traffic.unsaved(), keep_from_day=traffic.keep_from(counts[-1][0]))
    return traffic


def test_a_restart_continues_the_day_instead_of_starting_it_from_zero(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    _run(db, [(DAY1 + 1_000, 700, 10)])
    _run(db, [(DAY1 + 2_000, 300, 5)])  # a crash loop: each run counts a little
    traffic = _run(db, [(DAY1 + 3_000, 100, 1)])
    stats = traffic.statistics(DAY1 + 4_000)
    assert stats.today_readings == 16
    assert stats.today_bytes_per_reading == round((1100 + 30) / 16, 2)
    assert stats.app_bytes_sent == 100  # since this start: the counters of one run stay one run's
    assert stats.last_30_days_app_bytes == 1130


def test_days_roll_over_at_utc_midnight_and_only_the_last_days_are_kept(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    _run(db, [(DAY1 - 40 * DAY_MS, 999, 99), (DAY1 - 29 * DAY_MS, 50, 2), (DAY1 + DAY_MS - 1, 700, 10)])
    traffic = _run(db, [(DAY1 + DAY_MS, 300, 5)])  # restarted after midnight
    stats = traffic.statistics(DAY1 + DAY_MS + 10)
    assert (stats.today_readings, stats.yesterday_readings) == (5, 10)
    assert stats.last_30_days_readings == 15  # the day 30 days before today is out of the window
    with sqlite3.connect(db) as conn:
        days = [row[0] for row in conn.execute("SELECT day FROM traffic_day ORDER BY day")]
    assert days == [(DAY1 - 29 * DAY_MS) // DAY_MS, DAY1 // DAY_MS, DAY1 // DAY_MS + 1]
    assert days[0] > (DAY1 + DAY_MS) // DAY_MS - KEEP_DAYS  # 40 days back: deleted


def test_a_version_3_buffer_gains_the_table_and_keeps_its_batches(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    with Store.open(db, FAST) as store:
        epoch = store.epoch
    with sqlite3.connect(db) as conn:  # what a version-3 agent left: no traffic_day table
        conn.execute("DROP TABLE traffic_day")
        conn.execute("PRAGMA user_version=3")
    traffic = _run(db, [(DAY1, 500, 4)])
    with Store.open(db, FAST) as upgraded:
        assert upgraded.epoch == epoch and upgraded.statistics().quarantined == 0
        assert [d.readings for d in upgraded.traffic_days(0)] == [4]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert traffic.statistics(DAY1).today_readings == 4


def test_status_and_metrics_show_today_yesterday_and_the_last_30_days(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    _run(db, [(DAY1 - 5 * DAY_MS, 4_000, 40), (DAY1 - 1, 2_000, 20)])
    traffic = _run(db, [(DAY1 + 5, 1_000, 10)])
    status = json.loads(json.dumps(to_jsonable({"uplink": {"traffic": traffic.statistics(DAY1 + 10)}})))
    shown = status["uplink"]["traffic"]
    assert (shown["last_30_days_readings"], shown["yesterday_readings"], shown["today_readings"]) == (
        70,
        20,
        10,
    )
    assert shown["last_30_days_app_bytes"] == 7_030
    console = Console(record=True, width=200)
    render_status({"gateway_id": "gw", **status}, console)
    assert "last 30 days (restarts included) 7.0 KB, 70 readings" in console.export_text()
    assert "gateway_uplink_traffic_last_30_days_readings 70" in render(status).splitlines()


def test_totals_a_store_could_not_take_are_stored_with_the_next_save(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    traffic, today = Traffic(), now_ms()  # the agent stores with the wall clock's day
    traffic.application(today, sent=400, readings=3)
    closed = Store.open(db, FAST)
    closed.close()
    asyncio.run(_save_traffic(closed, traffic))  # StorageError: logged, the day stays unsaved
    with Store.open(db, FAST) as store:
        asyncio.run(_save_traffic(store, traffic))
        assert [(d.day, d.app_sent, d.readings) for d in store.traffic_days(0)] == [(today // DAY_MS, 400, 3)]
        asyncio.run(_save_traffic(store, traffic))  # nothing counted since: nothing written
