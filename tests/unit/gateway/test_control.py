"""The control socket's protocol on a real Unix socket: versioned lines, errors, bounds, streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.control import MAX_CONNECTIONS, ControlServer, RequestFailed, request, subscribe
from gateway.health import ReadingFeed, ReadingFilter, SensorBoard
from kernel.model import HealthEvent, Quality, Reading


@contextlib.asynccontextmanager
async def serving(server: ControlServer) -> AsyncIterator[Path]:
    task = asyncio.create_task(server.run())
    while not server.path.exists():
        await asyncio.sleep(0.01)
    try:
        yield server.path
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _server(tmp_path: Path) -> ControlServer:
    server = ControlServer(tmp_path / "c.sock")

    async def echo(arguments: Mapping[str, Any]) -> dict[str, Any]:
        if arguments.get("fail"):
            raise RequestFailed("not_found", "nothing here")
        return {"echo": arguments.get("x")}

    server.handle("echo", echo)
    return server


async def _raw(path: Path, line: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(line)
    await writer.drain()
    answer: dict[str, Any] = json.loads(await reader.readline())
    writer.close()
    return answer


async def test_requests_answers_and_errors_are_versioned_json_lines(tmp_path: Path) -> None:
    async with serving(_server(tmp_path)) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert await request(path, "echo", x=5) == {"echo": 5}
        with pytest.raises(RequestFailed, match="nothing here") as failed:
            await request(path, "echo", fail=True)
        assert failed.value.code == "not_found"
        unknown = await _raw(path, b'{"v": 1, "request": "launch"}\n')
        assert unknown["v"] == 1 and unknown["error"]["code"] == "unknown_request"
        assert "echo" in unknown["error"]["message"]
        assert (await _raw(path, b"{not json\n"))["error"]["code"] == "bad_request"
        assert (await _raw(path, b'{"v": 2, "request": "echo"}\n'))["error"]["code"] == "unsupported_version"
        assert (await _raw(path, b"[" * 60_000 + b"\n"))["error"]["code"] == "bad_request"


async def test_connections_beyond_the_limit_are_told_to_try_again(tmp_path: Path) -> None:
    async with serving(_server(tmp_path)) as path:
        held = [await asyncio.open_unix_connection(str(path)) for _ in range(MAX_CONNECTIONS)]
        await asyncio.sleep(0.05)
        assert (await _raw(path, b'{"request": "echo"}\n'))["error"]["code"] == "busy"
        for _reader, writer in held:
            writer.close()
        await asyncio.sleep(0.05)
        assert await request(path, "echo", x=1) == {"echo": 1}


async def test_a_stream_delivers_filtered_readings_and_ends_when_the_client_leaves(tmp_path: Path) -> None:
    feed = ReadingFeed()
    server = ControlServer(tmp_path / "c.sock")

    async def readings(arguments: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async def items() -> AsyncIterator[dict[str, Any]]:
            with feed.watch(ReadingFilter(frozenset(arguments["sensors"]))) as watcher:
                while True:
                    reading = await watcher.queue.get()
                    yield {"reading": {"sensor": reading.sensor, "value": reading.value}}

        return items()

    server.stream("readings", readings)
    async with serving(server) as path:
        got: list[dict[str, Any]] = []

        async def watch() -> None:
            async for item in subscribe(path, "readings", sensors=["a"]):
                got.append(item["reading"])
                if len(got) == 2:
                    return

        watching = asyncio.create_task(watch())
        while feed.watchers == 0:
            await asyncio.sleep(0.01)
        for sensor, value in (("b", 1.0), ("a", 2.0), ("b", 3.0), ("a", 4.0)):
            feed.publish(Reading(sensor, "t", 0, value, "Cel"))
        await watching
        assert got == [{"sensor": "a", "value": 2.0}, {"sensor": "a", "value": 4.0}]
        for _ in range(100):
            if feed.watchers == 0:
                break
            await asyncio.sleep(0.01)
        assert feed.watchers == 0, "the agent let go of the watcher when the client closed"


def test_the_board_says_why_a_sensor_is_stale_and_names_quality_flags() -> None:
    board = SensorBoard({"dust-1": 10.0, "quiet-1": 5.0}, started=100.0)
    board.reading(Reading("dust-1", "pm10", 1_000, 12.5, "ug/m3", Quality.CLOCK_UNSYNCED), now=101.0)
    board.event(HealthEvent(2_000, "quiet-1", "port_lost", "/dev/ttyUSB1: read failed"))
    board.event(HealthEvent(3_000, "quiet-1", "recovered", ""))
    view = board.view(now=107.0)
    assert view["dust-1"]["state"] == "ok"
    assert view["dust-1"]["last"]["pm10"] == {
        "ts_ms": 1_000,
        "value": 12.5,
        "unit": "ug/m3",
        "quality": ["CLOCK_UNSYNCED"],
    }
    quiet = view["quiet-1"]
    assert quiet["state"] == "stale" and quiet["errors"] == 1
    assert (
        quiet["reason"]
        == "no reading for 7 s (stale after 5 s); last error: port_lost: /dev/ttyUSB1: read failed"
    )
    assert board.view(now=112.0)["dust-1"]["state"] == "stale"


def test_a_bus_event_about_a_slave_counts_for_its_sensor() -> None:
    board = SensorBoard({"meter-1": 10.0}, started=0.0)
    board.event(
        HealthEvent(5_000, "modbus:tcp:10.0.0.5:502", "slave_dead", "meter-1 (unit 3): unit 3 did not answer")
    )
    board.event(HealthEvent(6_000, "modbus:tcp:10.0.0.5:502", "bus_lost", "connection reset"))
    view = board.view(now=20.0)["meter-1"]
    assert view["errors"] == 1 and view["last_error"]["kind"] == "slave_dead"
    assert "slave_dead: meter-1 (unit 3): unit 3 did not answer" in view["reason"]
