"""Serial codec throughput on one core, and what 20 simulated 1 Hz sensors cost the agent.

1. Each codec is fed a realistic byte stream in 4 KiB chunks (what a read returns) and drained of
   its events; the best of 3 runs counts (`*_frames_per_s`, `*_lines_per_s`).
2. 20 pty simulators (4 each of NMEA, SDS011, PMS5003, WXT, regex line sensor) send one frame a
   second while this process runs their 20 SerialDrivers; `twenty_sensors_core_fraction` is the CPU
   time of this process (the driver side only: the simulators are other processes) over the wall
   time, after a warm-up. `twenty_sensors_cost_vs_codec` relates the CPU spent per frame there to
   the bare codec's CPU per frame measured in part 1 of the same run: the price of the event loop,
   the pty reads and the readings, as a ratio rather than a time.

Targets (issue 6): SDS011 >= 200,000 frames/s, NMEA >= 100,000 lines/s; 20 sensors at 1 Hz under
1 % of one core (`twenty_sensors_core_fraction` < 0.01). Progress goes to stderr; the last stdout
line is the JSON result: the five keys the issue names, then the `twenty_sensors_*` keys.
Run: .venv/bin/python bench/serial_bench.py [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from drivers.base import Driver, DriverSpec
from drivers.serial import build_drivers, pms5003, sds011
from drivers.serial.codec import Codec
from drivers.serial.config import SerialSection
from drivers.serial.line_parser import LineField, LineParserCodec
from drivers.serial.nmea import NmeaCodec, sentence
from drivers.serial.wxt import WxtCodec
from gateway.logs import configure_logging
from hil.sims.line_sensor import PATTERN
from kernel.model import HealthEvent, Reading

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 100_000
CHUNK = 4096


def throughput(make_codec: Callable[[], Codec], frames: list[bytes]) -> float:
    """Frames decoded per second (best of 3), checking every frame came out as a sample."""
    stream = b"".join(frames)
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    best = float("inf")
    for _ in range(3):
        codec = make_codec()
        started = time.perf_counter()
        decoded = 0
        for chunk in chunks:
            codec.feed(chunk)
            for _event in codec.events():
                decoded += 1
        best = min(best, time.perf_counter() - started)
        if decoded != len(frames):
            raise SystemExit(f"{type(codec).__name__}: decoded {decoded} of {len(frames)}")
    return round(len(frames) / best)


def nmea_lines() -> list[bytes]:
    mda = sentence("WIMDA,29.92,I,1.0132,B,12.5,C,,,81.0,,9.3,C,245.0,T,,,9.7,N,5.0,M")
    xdr = sentence("WIXDR,C,12.4,C,0,H,80.5,P,0,P,1.0131,B,0")
    return [mda, xdr] * (FRAMES // 2)


def wxt_lines() -> list[bytes]:
    line = (
        b"0R0,Dn=236D,Dm=283D,Dx=031D,Sn=0.0M,Sm=1.0M,Sx=2.2M,Ta=23.6C,Ua=14.2P,Pa=1026.6H,"
        b"Rc=0.00M,Rd=0s,Ri=0.0M,Hc=0.0M,Hd=0s,Hi=0.0M,Th=24.2C,Vh=0.0N,Vs=12.1V,Vr=3.510V\r\n"
    )
    return [line] * FRAMES


def regex_codec() -> LineParserCodec:
    fields = {
        "t": LineField("air_temperature", "Cel"),
        "h": LineField("relative_humidity", "%RH"),
        "p": LineField("barometric_pressure", "Pa", scale=100.0),
    }
    return LineParserCodec(PATTERN, fields)


class CountingSink:
    def __init__(self) -> None:
        self.readings = 0

    def reading(self, reading: Reading) -> None:
        self.readings += 1

    def event(self, event: HealthEvent) -> None:
        pass


#: simulator module and serial section per kind of sensor, cycled over the 20
KINDS: list[tuple[str, dict[str, object]]] = [
    ("hil.sims.nmea_station", {"protocol": "nmea"}),
    ("hil.sims.sds011", {"protocol": "sds011"}),
    ("hil.sims.pms5003", {"protocol": "pms5003"}),
    ("hil.sims.wxt", {"protocol": "wxt"}),
    ("hil.sims.line_sensor", {"protocol": "regex", "regex": {
        "pattern": PATTERN,
        "fields": {"t": {"quantity": "air_temperature", "unit": "Cel"},
                   "h": {"quantity": "relative_humidity", "unit": "%RH"},
                   "p": {"quantity": "barometric_pressure", "unit": "Pa", "scale": 100.0}},
    }}),
]  # fmt: skip


def start_sensors(
    workdir: Path, sensors: int
) -> tuple[list[subprocess.Popen[str]], list[DriverSpec[SerialSection]]]:
    """Start `sensors` simulators at 1 Hz (the KINDS in turn) and their driver specs."""
    procs, specs = [], []
    for i in range(sensors):
        link = workdir / f"tty{i}"
        module, section = KINDS[i % len(KINDS)]
        command = [sys.executable, "-m", module, "--link", str(link), "--rate", "1", "--seed", str(i)]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT))
        specs.append(DriverSpec(f"s{i}", SerialSection.model_validate({**section, "port": str(link)})))
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()
    return procs, specs


def frames_decoded(drivers: list[Driver]) -> int:
    """Frames (samples) all drivers decoded so far."""
    return sum(d.statistics().samples for d in drivers)


async def agent_cost(specs: list[DriverSpec[SerialSection]], seconds: float) -> dict[str, float]:
    """CPU the drivers take in this process while the simulators run, as a fraction of one core."""
    sink = CountingSink()
    drivers = build_drivers(specs)
    tasks = [asyncio.create_task(d.run(sink)) for d in drivers]
    await asyncio.sleep(3.0)  # ports open, set-up commands answered, simulators settled
    cpu, wall = time.process_time(), time.monotonic()
    readings, frames = sink.readings, frames_decoded(drivers)
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    readings, frames = sink.readings - readings, frames_decoded(drivers) - frames
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if frames < 0.9 * len(specs) * wall:
        raise SystemExit(f"only {frames} frames from {len(specs)} sensors in {wall:.1f} s: not a 1 Hz load")
    return {"cpu_s": cpu, "wall_s": wall, "frames": frames, "readings": readings}


def twenty_sensors(seconds: float) -> dict[str, float]:
    """The agent's cost for 20 simulated sensors at 1 Hz."""
    with tempfile.TemporaryDirectory() as tmp:
        procs, specs = start_sensors(Path(tmp), 20)
        try:
            return asyncio.run(agent_cost(specs, seconds))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.communicate(timeout=10)


def main() -> None:
    """Run every measurement; the result is the last stdout line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=25.0, help="length of the 20-sensor run")
    args = parser.parse_args()
    configure_logging("info", "console", stream=sys.stderr)  # the agent's default level, off stdout
    frames = {
        "sds011_frames_per_s": (
            sds011.Sds011Codec, [sds011.data_frame(i % 999 / 10, i % 1999 / 10) for i in range(FRAMES)]
        ),
        "pms5003_frames_per_s": (
            pms5003.Pms5003Codec, [pms5003.data_frame(i % 50, i % 80, i % 99) for i in range(FRAMES)]
        ),
        "nmea_lines_per_s": (NmeaCodec, nmea_lines()),
        "wxt_lines_per_s": (WxtCodec, wxt_lines()),
        "regex_lines_per_s": (
            regex_codec, [f"T={i % 40 - 10}.25;H=55.5;P=1013.{i % 100:02d}\r\n".encode() for i in range(FRAMES)]
        ),
    }  # fmt: skip
    result: dict[str, float] = {}
    for key, (make_codec, stream) in frames.items():
        result[key] = throughput(make_codec, stream)
        print(f"{key}: {result[key]:,}", file=sys.stderr)
    load = twenty_sensors(args.seconds)
    print(f"20 sensors: {json.dumps(load)} on {os.cpu_count()} cores", file=sys.stderr)
    codec_s_per_frame = sum(1 / result[key] for key in frames) / len(frames)  # the 20 use each codec alike
    result |= {
        "twenty_sensors_core_fraction": round(load["cpu_s"] / load["wall_s"], 5),
        "twenty_sensors_frames_per_s": round(load["frames"] / load["wall_s"], 2),
        "twenty_sensors_readings_per_s": round(load["readings"] / load["wall_s"], 1),
        "twenty_sensors_cost_vs_codec": round(load["cpu_s"] / load["frames"] / codec_s_per_frame, 1),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
