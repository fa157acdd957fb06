"""Serial codec throughput on one core, and what 20 simulated 1 Hz sensors cost the agent.

Each codec is fed a realistic byte stream in 4 KiB chunks (what a read returns) and drained of its
events; the best of 3 runs counts. Targets (issue 6): SDS011 >= 200,000 frames/s, NMEA >= 100,000
lines/s; 20 sensors at 1 Hz under 1 % of one core (printed on its own line before the result).
The last stdout line is the JSON result with exactly the keys the issue names.
"""

from __future__ import annotations

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

from drivers.base import DriverSpec
from drivers.serial import build_drivers, pms5003, sds011
from drivers.serial.codec import Codec
from drivers.serial.config import SerialSection
from drivers.serial.line_parser import LineField, LineParserCodec
from drivers.serial.nmea import NmeaCodec, sentence
from drivers.serial.wxt import WxtCodec
from gateway.model import HealthEvent, Reading
from hil.sims.line_sensor import PATTERN

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


def start_sensors(
    workdir: Path, sensors: int
) -> tuple[list[subprocess.Popen[str]], list[DriverSpec[SerialSection]]]:
    """Start `sensors` simulators at 1 Hz (NMEA, SDS011, PMS5003, WXT in turn) and their driver specs."""
    kinds = [("hil.sims.nmea_station", "nmea"), ("hil.sims.sds011", "sds011"), ("hil.sims.pms5003", "pms5003"),
             ("hil.sims.wxt", "wxt")]  # fmt: skip
    procs, specs = [], []
    for i in range(sensors):
        link = workdir / f"tty{i}"
        module, protocol = kinds[i % len(kinds)]
        command = [sys.executable, "-m", module, "--link", str(link), "--rate", "1"]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT))
        specs.append(DriverSpec(f"s{i}", SerialSection(port=str(link), protocol=protocol)))
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()
    return procs, specs


async def agent_cost(specs: list[DriverSpec[SerialSection]], seconds: float) -> dict[str, float]:
    """CPU the drivers take in this process while the simulators run, in % of one core."""
    sink = CountingSink()
    tasks = [asyncio.create_task(d.run(sink)) for d in build_drivers(specs)]
    await asyncio.sleep(2.0)  # ports open, set-up commands answered
    cpu, wall, before = time.process_time(), time.monotonic(), sink.readings
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    readings = sink.readings - before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "agent_cpu_percent_of_one_core": round(100 * cpu / wall, 3),
        "sensors": len(specs),
        "readings_per_s": round(readings / wall, 1),
    }


def twenty_sensors(seconds: float = 20.0) -> dict[str, float]:
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
    result = {
        "sds011_frames_per_s": throughput(
            sds011.Sds011Codec, [sds011.data_frame(i % 999 / 10, i % 1999 / 10) for i in range(FRAMES)]
        ),
        "pms5003_frames_per_s": throughput(
            pms5003.Pms5003Codec, [pms5003.data_frame(i % 50, i % 80, i % 99) for i in range(FRAMES)]
        ),
        "nmea_lines_per_s": throughput(NmeaCodec, nmea_lines()),
        "wxt_lines_per_s": throughput(WxtCodec, wxt_lines()),
        "regex_lines_per_s": throughput(
            regex_codec,
            [f"T={i % 40 - 10}.25;H=55.5;P=1013.{i % 100:02d}\r\n".encode() for i in range(FRAMES)],
        ),
    }
    load = twenty_sensors()
    print(json.dumps({"twenty_sensors_1hz": load, "cpu_count": os.cpu_count()}))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
