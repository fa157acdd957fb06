"""The serial simulators' fault injection and exact counting, with this test as the reader of the pty."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.serial import sds011
from drivers.serial.codec import ChecksumMismatch, Event, Sample
from drivers.serial.sds011 import Sds011Codec
from hil.sims.sds011 import Sds011Device
from hil.sims.simulation import Counters, Simulation, simulator_arguments


class Rig:
    """Simulated SDS011s in query mode, and this test opening their ptys as the agent would."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.sims: list[Simulation] = []
        self.fds: list[int] = []

    def start(self, *options: str) -> Simulation:
        args = simulator_arguments("test").parse_args(["--link", str(self.tmp_path / "ttySDS"), *options])
        sim = Simulation(args, Sds011Device(seed=1, query_mode=True))
        sim.port.open()
        self.sims.append(sim)
        return sim

    def attach(self, sim: Simulation) -> int:
        fd = os.open(sim.port.link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for sim in self.sims:
            sim.port.close()
        for fd in self.fds:
            os.close(fd)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    running = Rig(tmp_path)
    yield running
    running.close()


async def read_chunk(fd: int) -> bytes:
    """The next bytes on the pty; b"" once it hung up (EOF or EIO)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, ready.set_result, None)
    try:
        async with asyncio.timeout(10):
            await ready
    finally:
        loop.remove_reader(fd)
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""


async def read_events(fd: int, count: int) -> list[Event]:
    """Decode what the device sends until `count` events (frames, bad checksums) came."""
    codec = Sds011Codec()
    events: list[Event] = []
    while len(events) < count:
        codec.feed(await read_chunk(fd))
        events += codec.events()
    return events


async def read_until_hangup(fd: int) -> bytes:
    """Everything the device sends until it hangs up."""
    received = b""
    while chunk := await read_chunk(fd):
        received += chunk
    return received


async def poll(sim: Simulation, fd: int) -> None:
    """Send one query-data command and let the device answer it."""
    os.write(fd, sds011.query_data())
    generation, command = await sim.port.receive()
    for frame in sim.source.answer(command):
        await sim.emit(frame, generation)


async def test_an_answer_to_a_poll_from_a_replaced_pty_is_neither_sent_nor_counted(rig: Rig) -> None:
    sim = rig.start()
    old = rig.attach(sim)
    os.write(old, sds011.query_data())
    generation, command = await sim.port.receive()
    (stale,) = sim.source.answer(command)
    sim.port.hangup()  # unplugged before the device answered
    new = rig.attach(sim)  # the agent reopens the link and polls again
    await sim.emit(stale, generation)
    assert sim.counters == Counters()
    os.write(new, sds011.query_data())
    generation, command = await sim.port.receive()
    (fresh,) = sim.source.answer(command)
    await sim.emit(fresh, generation)
    received = b""
    while len(received) < len(fresh.data):
        received += await read_chunk(new)
    assert received == fresh.data != stale.data  # the stale answer never reached the new pty
    assert sim.counters == Counters(sentences=1, readings=2, bad=0)


async def test_faults_are_numbered_by_data_frame_in_answers_to_polls_too(rig: Rig) -> None:
    sim = rig.start("--bad-every", "2", "--garbage-every", "3")
    fd = rig.attach(sim)
    for _ in range(3):
        await poll(sim, fd)
    events = await read_events(fd, 3)
    assert [type(e) for e in events] == [Sample, ChecksumMismatch, Sample]
    assert sim.counters == Counters(sentences=2, readings=4, bad=2)  # one corrupt frame, one burst


async def test_a_requested_hangup_cuts_the_next_answer_in_half_and_replugs(rig: Rig) -> None:
    sim = rig.start()
    fd = rig.attach(sim)
    first = sim.port.link.resolve()
    sim.hangup_requested = True  # what SIGUSR1 does
    received, _ = await asyncio.gather(read_until_hangup(fd), poll(sim, fd))
    assert len(received) == sds011.FRAME_LEN // 2
    assert received[:2] == bytes([sds011.HEAD, sds011.DATA])
    assert sim.port.link.resolve() != first and sim.port.link.exists()
    assert sim.counters == Counters(sentences=0, readings=0, bad=1)
