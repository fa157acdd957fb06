"""Real components for integration tests: a Mosquitto broker on a free loopback port, child processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from drivers.base import Sink
from drivers.lora.forwarder import PacketForwarderServer
from hil.broker import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running broker, stopped at the end of the test."""
    with Mosquitto(tmp_path / "broker") as running:
        yield running


class Processes:
    """Child processes a test starts; all are killed at the end whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[subprocess.Popen[str]] = []
        self._logs: list[IO[str]] = []

    def start(self, name: str, *args: str, pipe: bool = False) -> subprocess.Popen[str]:
        log = (self.workdir / f"{name}.log").open("w")
        self._logs.append(log)
        process = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE if pipe else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.children.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for process in self.children:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        for log in self._logs:
            log.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    running.stop_all()


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail the test naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file written atomically by a child process, or {} when not there yet."""
    try:
        result: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return result


@asynccontextmanager
async def forwarder_running(server: PacketForwarderServer, sink: Sink) -> AsyncIterator[tuple[str, int]]:
    """`server` serving `sink` until the block ends; the (host, port) it is bound to."""
    task = asyncio.create_task(server.run(sink))
    try:
        async with asyncio.timeout(5):
            while server.bound is None:
                await asyncio.sleep(0.01)
        yield server.bound
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
