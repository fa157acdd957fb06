"""Readings of weather-1 the receiver stored (read-only; run with the container's python3)."""

import sqlite3
import sys

db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
try:
    print(db.execute("SELECT count(*) FROM readings WHERE sensor = 'weather-1'").fetchone()[0])
except sqlite3.OperationalError:
    print(0)  # the receiver has not created its tables yet
