"""ServiceWatch over a real notify socket: start-up work extends the timeout, outside systemd nothing is sent."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.liveness import Progress
from gateway.sdnotify import Notifier, WatchdogSetting
from gateway.watchdog import ServiceWatch


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


async def test_long_start_up_work_extends_the_start_timeout(listener: socket.socket) -> None:
    service = ServiceWatch(Notifier(listener.getsockname()), WatchdogSetting(30.0))
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(10), service.starting("migrating the buffer"):
        assert await loop.sock_recv(listener, 4096) == b"STATUS=migrating the buffer"
        extension = await loop.sock_recv(listener, 4096)
    assert extension.split(b"\n") == [b"WATCHDOG=1", b"EXTEND_TIMEOUT_USEC=30000000"]
    service.ready("0 readings/min")
    assert await loop.sock_recv(listener, 4096) == b"READY=1\nSTATUS=0 readings/min"
    service.close()


async def test_outside_systemd_watch_returns_at_once_and_nothing_is_sent() -> None:
    service = ServiceWatch(Notifier(None), WatchdogSetting(0.01))

    async def probe() -> None:
        raise AssertionError("no probe without a service manager")

    async with asyncio.timeout(5):
        async with service.starting("opening"):
            pass
        await service.watch({"batcher": Progress()}, lambda: "status", probe)
    assert service.ticks == 0
