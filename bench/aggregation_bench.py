"""Benchmark of gateway.aggregation against pandas groupby and a plain-Python loop (issue 5).

Input: 10 million readings of 1,000 series at 1 Hz (10,000 s), 60 s windows, values taken from the
real NEON series in ../shared/data/sensor-series (missing lines skipped), each series with its
own phase and a few ms of jitter, arriving interleaved in (jittered) timestamp order. Prints one JSON
object as the last line:

- readings_per_s: gateway.aggregation.aggregate (best of 5, wall clock)
- pandas_readings_per_s: pandas groupby on an int64 (series, window) key computing the same
  statistics on the same arrays in the same run (count, min, max, sum, mean, std ddof=0, and
  first/last by timestamp through idxmin/idxmax), best of 5; results are checked to agree
- ratio_vs_pandas: readings_per_s / pandas_readings_per_s
- python_loop_readings_per_s: a plain-Python dict loop over the first 1 million readings
- peak_extra_memory_ratio: tracemalloc peak during aggregate / bytes of the three input arrays
- streaming_core_fraction: CPU seconds per simulated second of the agent's windowing
  (gateway.window_routing: readings in, closed windows out) fed 100 sensors x 1 Hz, one slice a second
  (60 s windows, 1 % of readings 30 s late), i.e. the fraction of one core it needs

pandas is a benchmark-only dependency (the `bench` extra).
"""

from __future__ import annotations

import json
import math
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from gateway.aggregation import Windows, aggregate
from gateway.window_routing import Windowing, WindowPolicy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sensor-series"
N_SERIES = 1_000
TICKS = 10_000
WINDOW_MS = 60_000
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def real_values() -> list[np.ndarray]:
    """The published series, one array per file, missing readings skipped."""
    series = []
    for path in sorted(DATA.glob("*.csv")):
        lines = path.read_text().split()
        series.append(np.array([float(x) for x in lines if x != '""'], np.float64))
    return series


def make_input(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Readings of N_SERIES sensors at 1 Hz, interleaved in arrival order."""
    sources = real_values()
    series = np.tile(np.arange(N_SERIES, dtype=np.int32), TICKS)
    tick = np.repeat(np.arange(TICKS, dtype=np.int64), N_SERIES)
    phase = rng.integers(0, 1_000, N_SERIES)
    ts = T0_MS + tick * 1_000 + phase[series] + rng.integers(-5, 6, len(series))
    by_tick = np.empty((TICKS, N_SERIES))
    for s in range(N_SERIES):
        source = sources[s % len(sources)]
        by_tick[:, s] = source[(s * 7_919 + np.arange(TICKS)) % len(source)]
    values = by_tick.reshape(-1)
    arrival = np.argsort(ts + rng.integers(0, 50, len(ts)), kind="stable")
    return series[arrival], ts[arrival], values[arrival]


def pandas_aggregate(series: np.ndarray, ts: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """The same statistics with pandas groupby on one int64 key."""
    window = ts // WINDOW_MS
    w0 = int(window.min())
    n_windows = int(window.max()) - w0 + 1
    key = series.astype(np.int64) * n_windows + (window - w0)
    frame = pd.DataFrame({"key": key, "value": values, "ts": ts})
    groups = frame.groupby("key", sort=True)
    stats = groups["value"].agg(["count", "min", "max", "sum", "mean"])
    stats["std"] = groups["value"].std(ddof=0)
    first_at = groups["ts"].idxmin().to_numpy()
    last_at = groups["ts"].idxmax().to_numpy()
    stats["first"], stats["last"] = values[first_at], values[last_at]
    stats["first_ts"], stats["last_ts"] = ts[first_at], ts[last_at]
    stats["series"] = stats.index.to_numpy() // n_windows
    stats["window_start"] = (stats.index.to_numpy() % n_windows + w0) * WINDOW_MS
    return stats


def python_loop(series: list[int], ts: list[int], values: list[float]) -> dict[tuple[int, int], list]:
    """A straightforward per-reading loop (Welford for mean and variance)."""
    windows: dict[tuple[int, int], list] = {}
    for s, t, v in zip(series, ts, values, strict=True):
        key = (s, t // WINDOW_MS * WINDOW_MS)
        w = windows.get(key)
        if w is None:
            windows[key] = [1, v, 0.0, v, v, v, t, v, t]
            continue
        w[0] += 1
        delta = v - w[1]
        w[1] += delta / w[0]
        w[2] += delta * (v - w[1])
        w[3], w[4] = min(w[3], v), max(w[4], v)
        if t < w[6]:
            w[5], w[6] = v, t
        if t >= w[8]:
            w[7], w[8] = v, t
    return windows


def best_time(run, repeat: int = 5) -> tuple[float, object]:
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def check_agreement(ours: Windows, theirs: pd.DataFrame) -> None:
    """Identical count/min/max/first/last, mean/std within 1e-9 relative (the issue's target)."""
    exact = ("series", "window_start", "count", "min", "max", "first", "last", "first_ts", "last_ts")
    for name in exact:
        if not np.array_equal(getattr(ours, name), theirs[name].to_numpy()):
            raise SystemExit(f"aggregate and pandas disagree on {name}")
    for name in ("mean", "std", "sum"):
        np.testing.assert_allclose(getattr(ours, name), theirs[name].to_numpy(), rtol=1e-9)


def peak_extra_memory(series: np.ndarray, ts: np.ndarray, values: np.ndarray) -> float:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    aggregate(series, ts, values, WINDOW_MS)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / (series.nbytes + ts.nbytes + values.nbytes)


def streaming_core_fraction(rng: np.random.Generator, values: np.ndarray) -> float:
    """CPU seconds per simulated second of the agent's windowing (gateway.window_routing, what the batcher
    calls for every slice it seals) for 100 sensors x 1 Hz, one slice a second, after an hour's
    warm-up, so that every window still revisable is held."""
    keys = [(f"sensor-{i}", "pm10", "ug/m3") for i in range(100)]
    policy = WindowPolicy(WINDOW_MS, allowed_lateness_ms=10_000, max_lateness_ms=3_600_000)
    windowing = Windowing({key[0]: policy for key in keys})
    series = np.arange(100, dtype=np.int32)
    quality = np.zeros(100, np.uint16)
    warmup, measured = 3_700, 1_800
    cpu = 0.0
    for second in range(warmup + measured):
        now = T0_MS + second * 1_000
        ts = now - rng.integers(0, 200, 100)
        late = rng.random(100) < 0.01
        ts[late] -= 30_000
        readings = values[second * 100 : second * 100 + 100]
        start = time.process_time()
        windowing.take(keys, series, ts, readings, quality, arrived_ms=now)
        windowing.close(now)
        if second >= warmup:
            cpu += time.process_time() - start
    return cpu / measured


def main() -> None:
    rng = np.random.default_rng(2026)
    series, ts, values = make_input(rng)
    n = len(ts)
    ours_s, ours = best_time(lambda: aggregate(series, ts, values, WINDOW_MS))
    pandas_s, theirs = best_time(lambda: pandas_aggregate(series, ts, values))
    check_agreement(ours, theirs)  # type: ignore[arg-type]
    loop_n = 1_000_000
    columns = series[:loop_n].tolist(), ts[:loop_n].tolist(), values[:loop_n].tolist()
    loop_s, _ = best_time(lambda: python_loop(*columns), repeat=1)
    result = {
        "readings_per_s": round(n / ours_s),
        "pandas_readings_per_s": round(n / pandas_s),
        "ratio_vs_pandas": round(pandas_s / ours_s, 2),
        "python_loop_readings_per_s": round(loop_n / loop_s),
        "peak_extra_memory_ratio": round(peak_extra_memory(series, ts, values), 3),
        "streaming_core_fraction": round(streaming_core_fraction(rng, values), 6),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
