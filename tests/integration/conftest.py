"""Real components for integration tests: a Mosquitto broker on a free loopback port, child processes
(hil/children.py, the harness the demo uses too)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers.base import Sink
from drivers.lora.forwarder import PacketForwarderServer
from hil.broker import Mosquitto
from hil.children import ChildProcesses


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running broker, stopped at the end of the test."""
    with Mosquitto(tmp_path / "broker") as running:
        yield running


#: the one child-process harness, shared with the demo (hil/children.py)
Processes = ChildProcesses


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = ChildProcesses(tmp_path)
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


def start_receiver(processes: Processes, port: int, keys: Path, db: Path, stats_file: Path) -> None:
    """`gateway receiver` on the broker at `port`, storing into `db`; returns once it is subscribed."""
    processes.start(
        "receiver", "-m", "gateway", "receiver", "--broker", f"127.0.0.1:{port}",
        "--keys", str(keys), "--db", str(db), "--stats-file", str(stats_file),
    )  # fmt: skip
    wait_until(lambda: read_json(stats_file).get("connected") is True, 30, "the receiver's session")


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
