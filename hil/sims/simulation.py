"""The part every serial simulator shares: command line, rate, fault injection, signals, counters.

A simulator module provides a `FrameSource` (what the device says) and calls `run_simulator`.
Counting is exact, because the demo computes "lost" from it: a frame counts once fully written to
the pty while a reader is attached; corrupted frames, garbage bursts and frames cut by a hangup
count under "bad". The last stdout line on SIGTERM/SIGINT is `{"sentences": N, "readings": M, "bad": B}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from hil.sims.pty_port import PtyPort


@dataclass(frozen=True, slots=True)
class Frame:
    """Bytes the device sends and how many valid readings they carry."""

    data: bytes
    readings: int


class FrameSource(Protocol):
    """What one simulated device says."""

    #: bytes that never start a frame: garbage is drawn from these so the next frame still decodes
    garbage_alphabet: bytes
    #: appended to each garbage burst (a line end, for line protocols without a start marker)
    garbage_end: bytes

    def frame(self, corrupt: bool) -> Frame | None:
        """The next periodic frame (with a wrong checksum if `corrupt`), None when the device is quiet."""
        ...

    def answer(self, command: bytes) -> list[Frame]:
        """Frames the device sends in answer to bytes it received (query mode, sleep/wake)."""
        ...


@dataclass(slots=True)
class Counters:
    """What the simulator sent, exactly."""

    sentences: int = 0
    readings: int = 0
    bad: int = 0

    def json(self) -> str:
        """The one JSON line a parent reads."""
        return json.dumps(asdict(self))


def simulator_arguments(description: str) -> argparse.ArgumentParser:
    """The options every simulator shares (a module adds its own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--link", type=Path, required=True, help="symlink to the pty slave (the 'port')")
    parser.add_argument("--rate", type=float, default=1.0, help="frames per second (default 1)")
    parser.add_argument(
        "--garbage-every", type=int, default=0, metavar="N", help="garbage before every Nth frame"
    )
    parser.add_argument(
        "--bad-every", type=int, default=0, metavar="N", help="wrong checksum on every Nth frame"
    )
    parser.add_argument(
        "--silence-every", type=int, default=0, metavar="N", help="go silent after every Nth frame"
    )
    parser.add_argument("--silence-s", type=float, default=5.0, help="length of each silence (default 5 s)")
    parser.add_argument(
        "--hangup-every", type=int, default=0, metavar="N", help="hang up in the middle of every Nth frame"
    )
    parser.add_argument("--stats-file", type=Path, help="rewrite the counters JSON there every second")
    parser.add_argument("--seed", type=int, default=1, help="random seed of values and garbage")
    parser.epilog = (
        "SIGUSR1 hangs up in the middle of the next frame. On SIGTERM/SIGINT the last stdout line is "
        '{"sentences": N, "readings": M, "bad": B}: sentences = valid frames fully written, readings = '
        "valid readings in them, bad = corrupted frames + garbage bursts + frames cut by a hangup."
    )
    return parser


def _due(every: int, n: int) -> bool:
    return every > 0 and n % every == 0


class Simulation:
    """Drives one FrameSource on one PtyPort until stopped."""

    def __init__(self, args: argparse.Namespace, source: FrameSource) -> None:
        self.args = args
        self.source = source
        self.port = PtyPort(args.link)
        self.counters = Counters()
        self.stop = asyncio.Event()
        self.hangup_requested = False
        self.rng = random.Random(args.seed)
        self._port_changed = asyncio.Event()
        #: a hangup waits until every counted byte was read; no answer may slip in meanwhile
        self._port_lock = asyncio.Lock()

    async def run(self) -> None:
        """Open the port, announce it, send frames until SIGTERM/SIGINT, print the counters."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self._request_hangup)
        self.port.open()
        print(json.dumps({"ready": str(self.args.link)}), flush=True)
        try:
            async with asyncio.TaskGroup() as tasks:
                helpers = [tasks.create_task(self._answer_commands())]
                if self.args.stats_file:
                    helpers.append(tasks.create_task(self._write_stats()))
                await self._send_frames()
                for helper in helpers:
                    helper.cancel()
        finally:
            await self.port.drain(2.0)
            self.port.close()
            if self.args.stats_file:
                self._dump_stats()
            print(self.counters.json(), flush=True)

    def _request_hangup(self) -> None:
        self.hangup_requested = True

    async def _send_frames(self) -> None:
        period = 1.0 / self.args.rate
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        n = 0
        while not self.stop.is_set():
            if not self.port.reader_attached():
                if not await self.port.wait_for_reader(self.stop):
                    return
                next_at = loop.time()  # no burst to catch up on the time nobody listened
            n += 1
            await self._one_tick(n)
            next_at = max(next_at + period, loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(next_at - loop.time()):
                    await self.stop.wait()

    async def _one_tick(self, n: int) -> None:
        args = self.args
        if self.hangup_requested or _due(args.hangup_every, n):
            self.hangup_requested = False
            await self._hangup_mid_frame()
            return
        if _due(args.garbage_every, n):
            await self.port.write(self._garbage())
            self.counters.bad += 1
        corrupt = _due(args.bad_every, n)
        frame = self.source.frame(corrupt)
        if frame is not None:
            await self._send(frame, corrupt)
        if _due(args.silence_every, n):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.silence_s):
                    await self.stop.wait()

    async def _send(self, frame: Frame, corrupt: bool = False) -> None:
        async with self._port_lock:
            await self.port.write(frame.data)
        if corrupt:
            self.counters.bad += 1
        elif frame.readings:
            # command acknowledgements carry no readings and are not counted as sentences
            self.counters.sentences += 1
            self.counters.readings += frame.readings

    async def _hangup_mid_frame(self) -> None:
        async with self._port_lock:
            await self.port.drain(2.0)
            frame = self.source.frame(False)
            if frame is not None:
                await self.port.write(frame.data[: len(frame.data) // 2])
                self.counters.bad += 1
                # let the reader take the half frame: a tty hangup discards unread input
                await self.port.drain(2.0)
            self.port.hangup()
            self._port_changed.set()

    def _garbage(self) -> bytes:
        alphabet = self.source.garbage_alphabet
        noise = bytes(self.rng.choice(alphabet) for _ in range(self.rng.randint(3, 40)))
        return noise + self.source.garbage_end

    async def _answer_commands(self) -> None:
        while True:
            self._port_changed.clear()
            read = asyncio.ensure_future(self.port.read())
            changed = asyncio.ensure_future(self._port_changed.wait())
            try:
                done, _ = await asyncio.wait({read, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                if not read.done():
                    read.cancel()
            if read not in done:
                continue  # the port was replaced by a hangup: read from the new one
            for frame in self.source.answer(read.result()):
                await self._send(frame)

    async def _write_stats(self) -> None:
        while True:
            self._dump_stats()
            await asyncio.sleep(1.0)

    def _dump_stats(self) -> None:
        path: Path = self.args.stats_file
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(self.counters.json() + "\n")
        os.replace(temporary, path)


def run_simulator(args: argparse.Namespace, source: FrameSource) -> int:
    """Entry point of a simulator module: run until SIGTERM/SIGINT, exit 0."""
    if args.rate <= 0:
        print("--rate must be > 0", file=sys.stderr)
        return 2
    asyncio.run(Simulation(args, source).run())
    return 0
