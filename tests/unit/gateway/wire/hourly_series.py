"""The hourly more-series files (../shared/data/more-series) as integer columns, for the coder's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

MORE_SERIES = Path(__file__).resolve().parents[5] / "shared" / "data" / "more-series"


def hourly(name: str, resolution: float, count: int) -> npt.NDArray[np.int64]:
    """The first `count` present values of a more-series file, in units of its resolution."""
    values = []
    for line in (MORE_SERIES / f"{name}.csv").read_text().splitlines()[1:]:
        value = line.split(",")[1]
        if value:
            values.append(round(float(value) / resolution))
        if len(values) == count:
            break
    return np.array(values, dtype=np.int64)
