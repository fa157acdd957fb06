"""Command schedules: query mode and duty cycling write the right commands in the right order."""

from __future__ import annotations

import asyncio

import pytest

from drivers.serial import pms5003, poller_for, polling, sds011
from drivers.serial.config import SerialSection
from drivers.serial.driver import Poller


class RecordingLine:
    port = "fake"

    def __init__(self) -> None:
        self.written: list[bytes] = []

    async def read(self) -> bytes:
        await asyncio.Event().wait()
        return b""

    async def write(self, data: bytes) -> None:
        self.written.append(data)

    async def close(self) -> None:
        pass


async def record(poller: Poller, commands: int) -> list[bytes]:
    line = RecordingLine()
    task = asyncio.create_task(poller.drive(line))
    async with asyncio.timeout(10):
        while len(line.written) < commands:
            await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return line.written[:commands]


@pytest.fixture(autouse=True)
def short_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(polling, "COMMAND_GAP_S", 0.001)


async def test_duty_cycle_wakes_queries_and_sleeps_the_sds011() -> None:
    section = SerialSection(
        port="x", protocol="sds011", polling={"interval_s": 0.7, "warmup_s": 0.01, "read_s": 0.01}
    )
    poller = poller_for(section)
    assert isinstance(poller, polling.DutyCycle)
    written = await record(poller, 8)
    wake, sleep, query = sds011.set_sleep(False), sds011.set_sleep(True), sds011.query_data()
    assert written == [wake, sds011.set_query_mode(True), wake, query, sleep, wake, query, sleep]


async def test_query_mode_polls_the_pms5003_without_sleeping_it() -> None:
    section = SerialSection(port="x", protocol="pms5003", polling={"mode": "query", "interval_s": 0.01})
    poller = poller_for(section)
    assert isinstance(poller, polling.QueryPoller)
    written = await record(poller, 5)
    assert written[:2] == [pms5003.set_sleep(False), pms5003.set_passive_mode(True)]
    assert written[2:] == [pms5003.read_passive()] * 3


async def test_active_mode_sends_set_up_once() -> None:
    poller = poller_for(SerialSection(port="x", protocol="sds011"))
    assert isinstance(poller, polling.ActiveSetup)
    assert await record(poller, 2) == [sds011.set_sleep(False), sds011.set_query_mode(False)]


async def test_a_polled_wxt_is_asked_for_its_composite_message_with_crc() -> None:
    section = SerialSection(
        port="x", protocol="wxt", wxt_address="3", wxt_crc=True, polling={"mode": "query", "interval_s": 0.01}
    )
    poller = poller_for(section)
    assert poller is not None
    assert await record(poller, 2) == [b"3r0\r\n", b"3r0\r\n"]


def test_talking_sensors_need_no_poller() -> None:
    assert poller_for(SerialSection(port="x", protocol="nmea")) is None
    assert poller_for(SerialSection(port="x", protocol="wxt")) is None
