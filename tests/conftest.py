"""Shared by every test: a fresh recording sink (hil.recording) for the drivers to emit into.

Markers (pyproject.toml): `slow` for the long integration runs (kill loops, crash loop, the demo,
agent rounds of the corruption sweep): `make test-fast` leaves them out, `make test` runs everything;
`hardware` for tests/hardware (skipped unless GATEWAY_HIL=1).
"""

from __future__ import annotations

import pytest

from hil.recording import RecordingSink


@pytest.fixture
def sink() -> RecordingSink:
    """A fresh recording sink for one test."""
    return RecordingSink()
