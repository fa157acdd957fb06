"""The uplink's per-day traffic totals in the buffer database: what survives a restart of the agent.

The uplink counts in memory and hands its changed days over now and then (once a minute and at
shutdown, gateway/agent.py); each row holds a day's totals, replaced whole, so a write lost in a crash
costs at most the counts since the last one and never counts anything twice.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence

from buffer.batching import immediate
from buffer.records import TrafficDay

_COLUMNS = tuple(field.name for field in dataclasses.fields(TrafficDay))


def load(conn: sqlite3.Connection, since_day: int) -> list[TrafficDay]:
    """The stored days from `since_day` on, oldest first; rows that are not counters are skipped."""
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM traffic_day WHERE day >= ? ORDER BY day", (since_day,)
    ).fetchall()
    # a flipped byte may leave a text or a negative number: that day is lost, not the agent's start
    return [TrafficDay(*row) for row in rows if all(isinstance(v, int) and v >= 0 for v in row)]


def save(conn: sqlite3.Connection, days: Sequence[TrafficDay], keep_from_day: int) -> None:
    """Replace the rows of `days` and delete those before `keep_from_day`, in one transaction."""
    with immediate(conn):
        conn.executemany(
            f"INSERT OR REPLACE INTO traffic_day({', '.join(_COLUMNS)})"
            f" VALUES ({', '.join('?' * len(_COLUMNS))})",
            [dataclasses.astuple(day) for day in days],
        )
        conn.execute("DELETE FROM traffic_day WHERE day < ?", (keep_from_day,))
