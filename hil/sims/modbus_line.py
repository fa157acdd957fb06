"""A simulated RS485 line: two pty pairs joined by a relay that paces bytes like a real wire.

The slave simulator opens `server_port`, the master opens `client_port` (a symlink, standing in
for /dev/serial/by-id/...). The relay delivers every chunk only after the time its bytes need on
a half-duplex line at `baud` (10 bits per byte for 8N1), so a poll over this line takes as long
as it would on a real bus. `unplug()` closes the master's side (its reads fail with EIO, as
when a USB adapter is pulled) and removes the symlink; `replug()` makes a new pty behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path


class _Pty:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyLine:
    """A pty-backed line between one slave simulator and one master."""

    def __init__(self, client_link: Path, baud: float | None = None, bits_per_byte: int = 10):
        self.client_link = client_link
        self.char_s = bits_per_byte / baud if baud else 0.0
        self._server = _Pty()
        self._client: _Pty | None = None
        self._busy_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bytes_carried = 0

    @property
    def server_port(self) -> str:
        """The device the slave simulator opens."""
        return self._server.path

    @property
    def client_port(self) -> str:
        """The device the master opens (a symlink that survives unplug/replug)."""
        return str(self.client_link)

    def start(self) -> None:
        """Start relaying (call from the event loop that should carry the line)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._server.master, self._relay, self._server, True)
        self.replug()

    def replug(self) -> None:
        """Plug a (new) adapter in: a fresh pty behind the client symlink."""
        assert self._loop is not None, "start() first"
        self._client = _Pty()
        with contextlib.suppress(FileNotFoundError):
            self.client_link.unlink()
        self.client_link.symlink_to(self._client.path)
        self._loop.add_reader(self._client.master, self._relay, self._client, False)

    def unplug(self) -> None:
        """Pull the adapter: the master's open port fails, the path disappears."""
        if self._client is None or self._loop is None:
            return
        self._loop.remove_reader(self._client.master)
        self._client.close()
        self._client = None
        with contextlib.suppress(FileNotFoundError):
            self.client_link.unlink()

    def close(self) -> None:
        """Stop relaying and free both ptys."""
        self.unplug()
        if self._loop is not None:
            self._loop.remove_reader(self._server.master)
        self._server.close()

    def _relay(self, source: _Pty, from_server: bool) -> None:
        try:
            data = os.read(source.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return
        assert self._loop is not None
        now = self._loop.time()
        self._busy_until = max(now, self._busy_until) + len(data) * self.char_s
        self.bytes_carried += len(data)
        self._loop.call_at(self._busy_until, self._deliver, data, from_server)

    def _deliver(self, data: bytes, from_server: bool) -> None:
        target = self._client if from_server else self._server
        if target is None:
            return  # unplugged while the bytes were on the wire
        with contextlib.suppress(OSError):
            os.write(target.master, data)
