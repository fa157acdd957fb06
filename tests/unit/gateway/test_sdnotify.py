"""sd_notify messages, their transport and ServiceWatch over a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.liveness import Progress
from gateway.sdnotify import (
    MAX_STATUS_CHARS,
    Notifier,
    WatchdogSetting,
    notification,
    socket_address,
    watchdog_setting,
)
from gateway.watchdog import ServiceWatch
from kernel.errors import ConfigError


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_a_message_is_one_assignment_per_line_in_systemds_spelling() -> None:
    message = notification(ready=True, status="12 readings/min", extend_timeout_usec=30_000_000)
    assert message == b"READY=1\nSTATUS=12 readings/min\nEXTEND_TIMEOUT_USEC=30000000"
    assert notification(watchdog=True, stopping=True) == b"STOPPING=1\nWATCHDOG=1"


def test_a_status_with_newlines_cannot_inject_another_assignment() -> None:
    message = notification(status="uplink down\nREADY=1\n" + "x" * 500)
    assert message.count(b"\n") == 0
    assert message.startswith(b"STATUS=uplink down READY=1 x")
    assert len(message) == len("STATUS=") + MAX_STATUS_CHARS


def test_extend_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        notification(extend_timeout_usec=0)


def test_watchdog_setting_is_for_this_process_only() -> None:
    assert watchdog_setting({"WATCHDOG_USEC": "30000000"}, pid=7) == WatchdogSetting(30.0)
    assert watchdog_setting({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == WatchdogSetting(
        30.0
    )
    assert watchdog_setting({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, pid=7) is None
    assert watchdog_setting({}, pid=7) is None
    with pytest.raises(ConfigError, match="WATCHDOG_USEC"):
        watchdog_setting({"WATCHDOG_USEC": "soon"}, pid=7)


def test_socket_names_follow_systemd() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == b"\0abstract/name"
    with pytest.raises(ConfigError, match="NOTIFY_SOCKET"):
        socket_address("relative")


def test_messages_arrive_on_the_notify_socket(listener: socket.socket) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": listener.getsockname()})
    assert notifier.enabled
    assert notifier.send(notification(ready=True))
    assert listener.recv(4096) == b"READY=1"
    notifier.close()


def test_a_missing_listener_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody"))
    assert not notifier.send(notification(watchdog=True))
    assert notifier.failed == 1
    notifier.close()


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.send(notification(ready=True))


async def test_long_start_up_work_extends_the_start_timeout(listener: socket.socket) -> None:
    listener.setblocking(False)
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
