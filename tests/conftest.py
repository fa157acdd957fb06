"""Shared by every test: a fresh recording sink (hil.recording) for the drivers to emit into, and under
`make`, the crash log of the test process (CRASH_LOG).

Markers (pyproject.toml): `slow` for the long runs (kill loops, crash loop, the demo, agent rounds of
the corruption sweep, keepalive timing, package and wheel builds): `make test-fast` leaves them out,
`make test` runs everything; `hardware` for tests/hardware (skipped unless GATEWAY_HIL=1).
"""

from __future__ import annotations

import faulthandler
import os
from typing import TextIO

import pytest

from hil.recording import RecordingSink

#: where a crash of the test process itself (SIGSEGV, SIGABRT in native code) leaves every thread's
#: Python stack: `make pytest` sets it and prints the project's frames from it, because a CI log
#: keeps only the end of the output, and pytest's own dump ends with its main loop, not the test
CRASH_LOG = os.environ.get("GATEWAY_TEST_CRASH_LOG", "")
_crash_file: list[TextIO] = []


@pytest.hookimpl(trylast=True)  # after pytest's faulthandler plugin, which points it at stderr
def pytest_configure(config: pytest.Config) -> None:
    if CRASH_LOG and not _crash_file:
        _crash_file.append(open(CRASH_LOG, "w"))  # noqa: SIM115 (open until the process ends)
        faulthandler.enable(file=_crash_file[0], all_threads=True)


@pytest.fixture
def sink() -> RecordingSink:
    """A fresh recording sink for one test."""
    return RecordingSink()
