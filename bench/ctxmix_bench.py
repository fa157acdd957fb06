"""The context-mixing coder (docs/wire-format.md section 4.1) alone, on the 22 shared series, against PPMd.

Per series (bench/wire_baselines.py: the first 6,000 readings, values at the series' resolution): the
coder's bytes for the value column as steps, as levels and, for wind direction, as circular steps, with
period 24 for the hourly more-series and 0 or 1,440 for the minute NEON series, the shortest kept;
beside it PPMd order 2 over the steps' zigzag varints in order (method 5's content), version 5's most
frequent winner on these columns. This is the coder alone: what a batch gains is bench/wire_bench.py's.
Speed: ns per value to encode and to decode the steps of Sand Point air temperature (5,999 values), best
of 3, and PPMd's on the same column in the same run: the ratio is the figure to compare across machines.
Prints informational lines, then ONE JSON object as the last line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pyppmd
from wire_baselines import AloneSeries, alone_series

from gateway.wire import ctxmix
from gateway.wire.varint import pack as pack_varints

Column = tuple[npt.NDArray[np.int64], tuple[int, int, int]]
PPMD_ORDER, PPMD_MEMORY = 2, 1 << 20
WIND_POSITIONS = 37  # 0..360 degrees at 10: 0 and 360 both occur


def candidates(series: AloneSeries) -> list[Column]:
    """The columns and parameters the coder is tried with for one series."""
    q = np.rint(series.columns.value / series.info.resolution).astype(np.int64)
    steps, levels = np.diff(q), q[1:] - q[0]
    periods = (24,) if series.more else (0, 1440)
    out = [(column, (p, history, 0)) for p in periods for column, history in ((steps, 0), (levels, 1))]
    if series.info.quantity == "wind_direction":
        half = WIND_POSITIONS // 2
        circular = (steps + half) % WIND_POSITIONS - half
        out += [(circular, (p, 0, WIND_POSITIONS)) for p in periods]
    return out


def ppmd_encode(column: npt.NDArray[np.int64]) -> tuple[bytes, int]:
    content = pack_varints(column)
    encoder = pyppmd.Ppmd7Encoder(PPMD_ORDER, PPMD_MEMORY)
    return encoder.encode(content) + encoder.flush(endmark=False), len(content)


def best_ns(action: Callable[[], object], values: int) -> float:
    """ns per value of the fastest of three runs."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return 1e9 * best / values


def speed(column: npt.NDArray[np.int64], params: tuple[int, int, int]) -> dict[str, float]:
    coded = ctxmix.encode(column, params)
    stream, length = ppmd_encode(column)
    n = len(column)
    figures = {
        "ctxmix_encode_ns_per_value": best_ns(lambda: ctxmix.encode(column, params), n),
        "ctxmix_decode_ns_per_value": best_ns(lambda: ctxmix.decode(coded, n, params), n),
        "ppmd_encode_ns_per_value": best_ns(lambda: ppmd_encode(column), n),
        "ppmd_decode_ns_per_value": best_ns(
            lambda: pyppmd.Ppmd7Decoder(PPMD_ORDER, PPMD_MEMORY).decode(stream, length), n
        ),
    }
    figures["encode_time_vs_ppmd"] = (
        figures["ctxmix_encode_ns_per_value"] / figures["ppmd_encode_ns_per_value"]
    )
    figures["decode_time_vs_ppmd"] = (
        figures["ctxmix_decode_ns_per_value"] / figures["ppmd_decode_ns_per_value"]
    )
    return {key: round(value, 3 if "vs" in key else 1) for key, value in figures.items()}


def main() -> None:
    sizes: dict[str, dict[str, int]] = {}
    timed: Column | None = None
    for series in alone_series(np.random.default_rng(17)):
        tried = candidates(series)
        coded = min(len(ctxmix.encode(column, params)) for column, params in tried)
        ppmd = len(ppmd_encode(tried[0][0])[0])
        sizes[series.name] = {"ctxmix": coded, "ppmd": ppmd}
        print(f"{series.name:32s} ctxmix {coded:6d}  PPMd o2 {ppmd:6d}  {coded / ppmd:.3f}")
        if series.name == "sand-point-air_temperature":
            timed = tried[0]
    assert timed is not None
    total = sum(s["ctxmix"] for s in sizes.values())
    total_ppmd = sum(s["ppmd"] for s in sizes.values())
    result = {
        "ctxmix_total_bytes": total,
        "ppmd_total_bytes": total_ppmd,
        "total_vs_ppmd": round(total / total_ppmd, 4),
        **speed(*timed),
        "per_series": sizes,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
