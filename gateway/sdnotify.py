"""systemd's service notification protocol (sd_notify(3)), without libsystemd.

The message is a few `KEY=value` lines in one datagram to the AF_UNIX socket named by
$NOTIFY_SOCKET. `notification()` builds it (pure, no I/O); `Notifier` is the thin transport.
Outside systemd (no $NOTIFY_SOCKET) the notifier does nothing, so `gateway run` behaves the same
in a terminal, a test or the demo.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from kernel.errors import ConfigError

#: the longest STATUS= text sent; systemctl shows one line, and a datagram must stay small
MAX_STATUS_CHARS = 200


def notification(
    *,
    ready: bool = False,
    stopping: bool = False,
    watchdog: bool = False,
    status: str | None = None,
    extend_timeout_usec: int | None = None,
) -> bytes:
    """One sd_notify datagram: READY=1, STOPPING=1, WATCHDOG=1, STATUS=..., EXTEND_TIMEOUT_USEC=..."""
    lines = []
    if ready:
        lines.append("READY=1")
    if stopping:
        lines.append("STOPPING=1")
    if watchdog:
        lines.append("WATCHDOG=1")
    if status is not None:
        # a newline would start a new assignment: the status is one line by construction
        one_line = " ".join(status.split())[:MAX_STATUS_CHARS]
        lines.append(f"STATUS={one_line}")
    if extend_timeout_usec is not None:
        if extend_timeout_usec <= 0:
            raise ValueError("EXTEND_TIMEOUT_USEC must be positive")
        lines.append(f"EXTEND_TIMEOUT_USEC={extend_timeout_usec}")
    return "\n".join(lines).encode()


@dataclass(frozen=True)
class WatchdogSetting:
    """What systemd asked for: WATCHDOG=1 at least every `interval_s` (WatchdogSec=)."""

    interval_s: float


def watchdog_setting(environ: Mapping[str, str], pid: int) -> WatchdogSetting | None:
    """$WATCHDOG_USEC for this process (sd_watchdog_enabled(3)); None when no watchdog is configured."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None  # meant for another process (e.g. the ExecStartPre check)
    try:
        value = int(usec)
    except ValueError as exc:
        raise ConfigError(f"WATCHDOG_USEC={usec!r} is not a number of microseconds") from exc
    return WatchdogSetting(value / 1_000_000) if value > 0 else None


def socket_address(name: str) -> str | bytes:
    """$NOTIFY_SOCKET as an AF_UNIX address: a leading '@' names the abstract namespace."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if not name.startswith("/"):
        raise ConfigError(f"NOTIFY_SOCKET={name!r} is neither a path nor an abstract name")
    return name


class Notifier:
    """Sends notifications to systemd; a no-op when the process was not started by a notify unit."""

    def __init__(self, address: str | bytes | None) -> None:
        self._address = address
        self._socket: socket.socket | None = None
        self.sent = 0
        self.failed = 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier for $NOTIFY_SOCKET (absent: a no-op notifier)."""
        name = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
        return cls(socket_address(name) if name else None)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self._address is not None

    def send(self, message: bytes) -> bool:
        """Send one datagram (non-blocking); False when nobody listens or the send failed."""
        if self._address is None or not message:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto(message, self._address)
        except OSError:
            # systemd restarted or the socket is full: the next message tries again; a missed
            # WATCHDOG=1 is exactly what the watchdog is for, so this is counted, not raised
            self.failed += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
