"""Readings of weather-1 the receiver stored, optionally only those before a time (epoch ms).

Read-only; run with the container's python3.
"""

import sqlite3
import sys

db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
until = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else 1 << 62
try:
    query = "SELECT count(*) FROM readings WHERE sensor = 'weather-1' AND ts_ms < ?"
    print(db.execute(query, (until,)).fetchone()[0])
except sqlite3.OperationalError:
    print(0)  # the receiver has not created its tables yet
