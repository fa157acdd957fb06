"""The agent under a notify unit: READY after start, WATCHDOG=1 only while the writer and batcher progress.

A real AF_UNIX datagram socket stands in for systemd's $NOTIFY_SOCKET and a pty NMEA station
feeds the agent. A stuck writer thread or batcher is faked with a hook that blocks it on an event.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Processes
from test_skeleton_path import start_station, write_config

from buffer.writer import Writer
from gateway.agent import Agent
from gateway.batcher import Batcher
from gateway.config import load_config
from gateway.sdnotify import Notifier, WatchdogSetting
from gateway.watchdog import ServiceWatch
from hil.broker import free_port


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


def drain(sock: socket.socket) -> list[bytes]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096))
        except BlockingIOError:
            return messages


async def until(condition: Any, what: str, timeout_s: float = 20.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


class Blocker:
    """A hook that parks a thread inside a method while `stuck` is set."""

    def __init__(self) -> None:
        self.stuck = threading.Event()
        self.release = threading.Event()

    def wrap(self, method: Any) -> Any:
        def hooked(*args: Any, **kwargs: Any) -> Any:
            if self.stuck.is_set():
                self.release.wait()
            return method(*args, **kwargs)

        return hooked


async def run_stuck_and_recover(
    tmp_path: Path, processes: Processes, notify: socket.socket, blocker: Blocker, part: str
) -> None:
    link = tmp_path / "ttyWEATHER"
    start_station(processes, link, rate=20)
    config_file, _ = write_config(tmp_path, free_port(), link)
    # 0.4 s WatchdogSec: a judgement every 0.1 s, a part is stuck after 0.2 s without progress
    service = ServiceWatch(Notifier(notify.getsockname()), WatchdogSetting(0.4))
    agent = Agent(load_config(config_file), service=service)
    running = asyncio.create_task(agent.run())
    try:
        await until(lambda: any(m.startswith(b"READY=1") for m in drain(notify)), "READY=1")
        await until(lambda: b"WATCHDOG=1" in b"|".join(drain(notify)), "a first WATCHDOG=1")
        await until(lambda: service.ticks > 2, "more judgements")
        status = [m for m in drain(notify) if b"STATUS=" in m]
        assert b"readings/min, backlog " in status[-1] and b"uplink " in status[-1]

        blocker.stuck.set()
        await until(lambda: part in service.stuck, f"the {part} judged stuck")
        drain(notify)
        seen = service.ticks
        await until(lambda: service.ticks >= seen + 3, "three more judgements")
        withheld = drain(notify)
        assert withheld and not any(b"WATCHDOG=1" in m for m in withheld)
        assert all(m.startswith(b"STATUS=STUCK: " + part.encode()) for m in withheld)

        blocker.stuck.clear()
        blocker.release.set()
        await until(lambda: b"WATCHDOG=1" in b"|".join(drain(notify)), "WATCHDOG=1 after recovery")
        assert service.stuck == ()
    finally:
        blocker.stuck.clear()
        blocker.release.set()
        agent.stop()
        await asyncio.wait_for(running, 30)
    assert any(m.startswith(b"STOPPING=1") for m in drain(notify))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("owner", "method", "part"),
    [(Writer, "_commit", "buffer-writer"), (Batcher, "_seal_next", "batcher")],
    ids=["writer-thread", "batcher"],
)
async def test_a_stuck_part_withholds_the_watchdog_ping_until_it_progresses(
    tmp_path: Path,
    processes: Processes,
    notify_socket: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    owner: type,
    method: str,
    part: str,
) -> None:
    blocker = Blocker()
    monkeypatch.setattr(owner, method, blocker.wrap(getattr(owner, method)))
    await run_stuck_and_recover(tmp_path, processes, notify_socket, blocker, part)
