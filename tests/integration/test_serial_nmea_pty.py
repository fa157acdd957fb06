"""NMEA station simulator on a real pty -> SerialLine/SerialDriver, including a hangup mid-sentence."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.base import DriverSpec
from drivers.serial import build_drivers
from drivers.serial.config import SerialSection


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    link = tmp_path / "ttyWX"
    args = ["--link", str(link), "--rate", "25", "--sentences", "mda,xdr,mwv,mtw"]
    args += ["--bad-every", "7", "--garbage-every", "5"]
    with (tmp_path / "station.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hil.sims.nmea_station", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert process.stdout is not None
        assert json.loads(process.stdout.readline()) == {"ready": str(link)}
        yield process, link
        if process.poll() is None:
            process.kill()
        process.communicate()


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
async def test_every_sentence_the_station_sent_arrives_once_even_across_a_hangup(
    station: tuple[subprocess.Popen[str], Path], sink
) -> None:
    process, link = station
    section = SerialSection(port=str(link), baud=4800, reopen_initial_s=0.1, reopen_cap_s=0.5)
    (driver,) = build_drivers([DriverSpec("wx-1", section, stale_after_s=30)])
    task = asyncio.create_task(driver.run(sink))
    try:
        await until(lambda: len(sink.readings) >= 30, "first readings")
        process.send_signal(signal.SIGUSR1)
        await until(lambda: any(e.kind == "port_lost" for e in sink.events), "the hangup")
        before = len(sink.readings)
        await until(lambda: len(sink.readings) >= before + 30, "readings after reopening")
        process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(process.communicate, timeout=20)
        sent = json.loads(out.strip().splitlines()[-1])
        await until(lambda: len(sink.readings) >= sent["readings"], "the last readings", 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(sink.readings) == sent["readings"]
    stats = driver.statistics()
    assert stats.codec.checksum_errors >= 1
    assert stats.codec.garbage_bytes > 0
    assert stats.samples == sent["sentences"]
    quantities = {r.quantity for r in sink.readings}
    assert {"air_temperature", "barometric_pressure", "wind_speed", "water_temperature"} <= quantities
