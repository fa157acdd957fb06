"""A pytest plugin for `make ctxmix-check`: the coder's tests against a sanitizer build of the library.

Loaded only by `-p ctxmix_check` (the Makefile puts this folder on PYTHONPATH), never by `make test`:
every coder call of the session then goes to the library at $CTXMIX_CHECK_LIBRARY, compiled with
AddressSanitizer and UndefinedBehaviorSanitizer, so a read or write out of bounds, a use after free or
any undefined arithmetic aborts the run (leak detection is off: the interpreter's own allocations would
drown it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.wire import ctxmix


def pytest_configure(config: pytest.Config) -> None:
    sanitized = ctxmix.load(Path(os.environ["CTXMIX_CHECK_LIBRARY"]))
    ctxmix.library = lambda: sanitized  # type: ignore[assignment]


def pytest_report_header(config: pytest.Config) -> str:
    return f"ctxmix-check: the coder library is {ctxmix.library().path}"
