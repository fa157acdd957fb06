"""Fixtures of the wire tests."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.wire import ctxmix


@pytest.fixture
def without_the_coder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches as a gateway whose coder library is missing writes them: methods 0 to 7 only.

    Method 8 wins every hourly column the version-5 tests build; this keeps those tests on the
    methods and predictors they are about (PPMd, brotli, method 7, levels, circular steps)."""

    def missing(values: np.ndarray, params: list[int]) -> bytes:
        raise ctxmix.CoderUnavailable("the coder library is missing (a test of methods 0 to 7)")

    monkeypatch.setattr(ctxmix, "encode", missing)
