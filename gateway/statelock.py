"""One agent per state directory: an exclusive flock held for the life of `gateway run`.

Two agents on the same state directory would share the buffer, the MQTT client id and the control
socket: the second took the socket over and, on exit, deleted it, leaving the first invisible to
`gateway status` (issue 13). The kernel drops a flock when its holder dies, even by SIGKILL, so a
stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from kernel.errors import AgentRunning

LOCK_NAME = "agent.lock"


class StateLock:
    """The held lock on <state dir>/agent.lock, which also names the holder's PID."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, state_dir: Path, pid: int | None = None) -> StateLock:
        """Take the lock without waiting; AgentRunning naming the holder's PID when another agent has it."""
        path = state_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"PID {holder}" if holder is not None else "PID unknown"
            raise AgentRunning(f"another agent ({who}) is running on state directory {state_dir}") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid() if pid is None else pid}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Give the lock up (the file stays: removing it would race with the next agent's open)."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = -1

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    return None
