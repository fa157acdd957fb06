"""A pseudo-terminal standing in for a USB serial adapter, at a stable symlink like /dev/serial/by-id/...

The simulator owns the master end; the agent opens the symlink exactly as it opens a real port.
The simulator does not keep the slave end open itself, so it can tell whether a reader is attached
(the master then reports no POLLHUP) and writes only while one is: pyserial flushes the input queue
when it opens a port, so bytes written before that would be lost yet counted as sent.

Each pty pair is one *generation* of the port (`generation` counts them): bytes read carry the
generation they came from, so a device never answers a command into the pty that replaced the one
the command arrived on (the agent has not opened it yet, and its open would flush the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import struct
import termios
import tty
from pathlib import Path

#: after a reader appears, pyserial configures the port and flushes its input queue: wait that out
SETTLE_S = 0.5
#: how long the slave's input queue must stay empty before the reader is taken to have read it all
DRAIN_QUIET_S = 0.05


class PtyPort:
    """The master end of a pty pair, its slave reachable at `link`; `hangup()` unplugs and replugs it."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self._master = -1
        self.slave_name = ""
        self._poll = select.poll()
        #: how many pty pairs this port has had: +1 on every open (and so on every hangup)
        self.generation = 0
        #: futures waiting for the master to become readable/writable, woken when it is replaced
        self._waiters: set[asyncio.Future[None]] = set()

    def open(self) -> None:
        """Create a fresh pty pair (raw mode) and point the link at its slave end."""
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            self.slave_name = os.ttyname(slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self.generation += 1
        self._poll = select.poll()
        self._poll.register(master, select.POLLOUT)
        temporary = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(self.slave_name)
        os.replace(temporary, self.link)

    def close(self) -> None:
        """Close the master end (the reader sees a hangup) and remove the link."""
        self._close_master()
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    def hangup(self) -> None:
        """Simulate an unplug and replug: a new pty behind the link, then the old one closed.

        In that order, so that a reader who sees the hangup and reopens the link at once finds the
        new pty, never a link to a device that is gone.
        """
        old = self._master
        self._master = -1
        self.open()
        self._close(old)

    def _close_master(self) -> None:
        old = self._master
        self._master = -1
        self._close(old)

    def _close(self, fd: int) -> None:
        if fd >= 0:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing registered
                loop = asyncio.get_running_loop()
                loop.remove_reader(fd)
                loop.remove_writer(fd)
            os.close(fd)
        for waiter in self._waiters:
            _wake(waiter)

    def reader_attached(self) -> bool:
        """True while some process holds the slave end open."""
        return not any(mask & select.POLLHUP for _fd, mask in self._poll.poll(0))

    async def wait_for_reader(self, stop: asyncio.Event) -> bool:
        """Wait until a reader has held the current pty open for SETTLE_S; False if `stop` came first.

        Also when a reader is already attached: nobody knows since when, and bytes written before
        pyserial's flush at open would be lost.
        """
        while not stop.is_set():
            if self.reader_attached():
                generation = self.generation
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SETTLE_S):
                        await stop.wait()
                if self.reader_attached() and generation == self.generation:
                    return not stop.is_set()
                continue  # it left again (or the pty was replaced) during the settle time
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    await stop.wait()
        return False

    def unread(self) -> int:
        """Bytes written but not yet read from the slave end (its input queue)."""
        try:
            fd = os.open(self.slave_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return 0
        try:
            raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
        finally:
            os.close(fd)
        return int(struct.unpack("i", raw)[0])

    async def drain(self, timeout_s: float) -> None:
        """Wait until the reader took every byte written (or `timeout_s` passed, or it left).

        The kernel moves written bytes to the slave's queue asynchronously (a work queue), so an
        empty queue right after a write proves nothing: it must stay empty for DRAIN_QUIET_S.
        """
        quiet_since = asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.reader_attached():
                    now = asyncio.get_running_loop().time()
                    if self.unread():
                        quiet_since = now
                    elif now - quiet_since >= DRAIN_QUIET_S:
                        return
                    await asyncio.sleep(0.01)

    async def write(self, data: bytes) -> None:
        """Write all of `data`, waiting for room when the reader is slow (returns once written).

        If the pty is replaced meanwhile (a hangup), the rest is dropped, as on a pulled cable.
        """
        view = memoryview(data)
        generation = self.generation
        while view and generation == self.generation:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                written = 0
            view = view[written:]
            if view:
                await self._wait(readable=False)

    async def receive(self) -> tuple[int, bytes]:
        """The next bytes the reader wrote to the device (commands), with the pty generation they came from."""
        while True:
            try:
                return self.generation, os.read(self._master, 4096)
            except BlockingIOError:
                pass
            except OSError:
                # EIO while no reader is attached: nothing to read yet.
                await asyncio.sleep(0.05)
                continue
            await self._wait(readable=True)

    async def read(self) -> bytes:
        """Return the next bytes the reader wrote to the device (commands), from whichever pty."""
        _generation, data = await self.receive()
        return data

    async def _wait(self, *, readable: bool) -> None:
        """Until the master is readable (writable), or replaced by a hangup."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd, generation = self._master, self.generation
        add, remove = (
            (loop.add_reader, loop.remove_reader) if readable else (loop.add_writer, loop.remove_writer)
        )
        add(fd, _wake, ready)
        self._waiters.add(ready)
        try:
            await ready
        finally:
            self._waiters.discard(ready)
            if generation == self.generation and fd == self._master:
                remove(fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
