"""The part every serial simulator shares: command line, rate, fault injection, signals, counters.

A simulator module provides a `FrameSource` (what the device says) and calls `run_simulator`.
Counting is exact, because the demo and the tests compute "lost" from it: a frame counts once fully
written to the pty while a reader is attached; corrupted frames, garbage bursts and frames cut by a
hangup count under "bad"; a frame nobody could hear is neither written nor counted. The last stdout line on SIGTERM/SIGINT is `{"sentences": N, "readings": M, "bad": B}`.
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

#: how long a hangup or the exit waits for the reader to take what was written
DRAIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Frame:
    """Bytes the device sends and how many valid readings they carry (0: a command acknowledgement)."""

    data: bytes
    readings: int


class FrameSource(Protocol):
    """What one simulated device says."""

    #: bytes that never start a frame: garbage is drawn from these so the next frame still decodes
    garbage_alphabet: bytes
    #: appended to each garbage burst (a line end, for line protocols without a start marker)
    garbage_end: bytes

    def frame(self) -> Frame | None:
        """The next periodic frame, None when the device is quiet (query mode, asleep)."""
        ...

    def answer(self, command: bytes) -> list[Frame]:
        """Frames the device sends in answer to bytes it received (query mode, sleep/wake)."""
        ...

    def corrupt(self, data: bytes) -> bytes:
        """`data` (one of this source's data frames) with a wrong checksum, or otherwise undecodable."""
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
        "--garbage-every", type=int, default=0, metavar="N", help="garbage before every Nth data frame"
    )
    parser.add_argument(
        "--bad-every", type=int, default=0, metavar="N", help="wrong checksum on every Nth data frame"
    )
    parser.add_argument(
        "--silence-every",
        type=int,
        default=0,
        metavar="N",
        help="after every Nth data frame say nothing (answer no command) for --silence-s",
    )
    parser.add_argument("--silence-s", type=float, default=5.0, help="length of each silence (default 5 s)")
    parser.add_argument(
        "--hangup-every",
        type=int,
        default=0,
        metavar="N",
        help="hang up in the middle of every Nth data frame",
    )
    parser.add_argument("--stats-file", type=Path, help="rewrite the counters JSON there every second")
    parser.add_argument("--seed", type=int, default=1, help="random seed of values and garbage")
    parser.epilog = (
        "Data frames are numbered whether sent periodically or in answer to a poll. "
        "SIGUSR1 hangs up in the middle of the next data frame. On SIGTERM/SIGINT the last stdout line is "
        '{"sentences": N, "readings": M, "bad": B}: sentences = valid frames fully written, readings = '
        "valid readings in them, bad = corrupted frames + garbage bursts + frames cut by a hangup."
    )
    return parser


def _due(every: int, n: int) -> bool:
    return every > 0 and n % every == 0


class Simulation:
    """Drives one FrameSource on one PtyPort until stopped.

    Faults are numbered by data frame, periodic or answered alike (`--bad-every 3`: the 3rd, 6th, ...
    data frame the device sends), so a sensor in query mode sees garbage, bad checksums, silence and
    hangups mid-frame just like a streaming one. A frame nobody can hear is neither sent nor counted:
    while no reader is attached, while the device is silent, and when it answers a command that came
    from a pty that a hangup has replaced since.
    """

    def __init__(self, args: argparse.Namespace, source: FrameSource) -> None:
        self.args = args
        self.source = source
        self.port = PtyPort(args.link)
        self.counters = Counters()
        self.stop = asyncio.Event()
        self.hangup_requested = False
        self.rng = random.Random(args.seed)
        #: data frames sent (or cut by a hangup) so far: what the --*-every options count
        self._data_frames = 0
        #: loop time until which the device says nothing (--silence-every)
        self._silent_until = 0.0
        #: a hangup waits until every counted byte was read; no frame may slip in meanwhile
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
            async with self._port_lock:
                await self.port.drain(DRAIN_TIMEOUT_S)
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
        settled = 0  # the pty generation whose reader had time to finish opening it
        while not self.stop.is_set():
            if settled != self.port.generation or not self.port.reader_attached():
                if not await self.port.wait_for_reader(self.stop):
                    return
                settled = self.port.generation
                next_at = loop.time()  # no burst to catch up on the time nobody listened
            frame = self.source.frame()
            if frame is not None:
                await self.emit(frame, self.port.generation)
            next_at = max(next_at + period, loop.time(), self._silent_until)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(next_at - loop.time()):
                    await self.stop.wait()

    async def _answer_commands(self) -> None:
        while True:
            generation, command = await self.port.receive()
            for frame in self.source.answer(command):
                await self.emit(frame, generation)

    async def emit(self, frame: Frame, generation: int) -> None:
        """Send one frame meant for pty `generation`, with the faults due for it, and count it."""
        async with self._port_lock:
            if not self._heard(generation):
                return
            if not frame.readings:
                await self.port.write(frame.data)  # acknowledgements count nowhere
                return
            self._data_frames += 1
            n, args = self._data_frames, self.args
            if self.hangup_requested or _due(args.hangup_every, n):
                await self._hangup_mid_frame(frame)
                return
            if _due(args.garbage_every, n):
                await self.port.write(self._garbage())
                self.counters.bad += 1
            if _due(args.bad_every, n):
                await self.port.write(self.source.corrupt(frame.data))
                self.counters.bad += 1
            else:
                await self.port.write(frame.data)
                self.counters.sentences += 1
                self.counters.readings += frame.readings
            if _due(args.silence_every, n):
                self._silent_until = asyncio.get_running_loop().time() + args.silence_s

    def _heard(self, generation: int) -> bool:
        return (
            generation == self.port.generation
            and self.port.reader_attached()
            and asyncio.get_running_loop().time() >= self._silent_until
        )

    async def _hangup_mid_frame(self, frame: Frame) -> None:
        """Unplug in the middle of `frame` (the caller holds the port lock)."""
        self.hangup_requested = False
        await self.port.drain(DRAIN_TIMEOUT_S)
        await self.port.write(frame.data[: len(frame.data) // 2])
        self.counters.bad += 1
        # let the reader take the half frame: a tty hangup discards unread input
        await self.port.drain(DRAIN_TIMEOUT_S)
        self.port.hangup()

    def _garbage(self) -> bytes:
        alphabet = self.source.garbage_alphabet
        noise = bytes(self.rng.choice(alphabet) for _ in range(self.rng.randint(3, 40)))
        return noise + self.source.garbage_end

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
