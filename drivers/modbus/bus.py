"""The bus scheduler: one driver per RS485 line (or TCP connection), one request at a time.

Each slave is polled at its own interval, earliest due first. A slave that does not answer
costs at most its timeout x (1 + retries) per poll until its breaker opens; after that it is
probed with single requests at a slow rate (drivers.modbus.breaker). Exception responses are
answers: the slave stays alive, the refused read's readings are NaN flagged DEVICE_WARNING, and
the change is logged once. When the port goes away (USB unplug) it is reopened with capped backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from drivers.base import Sink
from drivers.modbus.breaker import SlaveState
from drivers.modbus.errors import BusLost, ExceptionResponse, SlaveTimeout, exception_name
from drivers.modbus.link import ModbusLink
from drivers.modbus.planner import PlannedRead
from drivers.modbus.registers import RegisterKind
from drivers.modbus.slave import Slave, readings_from_answer, refused_readings, split_read
from kernel.backoff import Backoff
from kernel.errors import ProtocolError
from kernel.model import HealthEvent
from kernel.retry import RetrySeries

log = structlog.get_logger("drivers.modbus")

_ILLEGAL_DATA_ADDRESS = 2


@dataclass(frozen=True)
class SlaveStatistics:
    """Counters of one slave."""

    sensor: str
    unit: int
    state: str
    polls_ok: int
    polls_failed: int
    exception_responses: int
    reads_per_poll: int


@dataclass(frozen=True)
class BusStatistics:
    """Counters of one bus, for the CLI and metrics."""

    bus: str
    is_open: bool
    opens: int
    losses: int
    requests: int
    timeouts: int
    exception_responses: int
    slaves: tuple[SlaveStatistics, ...]


@dataclass(frozen=True)
class BusTiming:
    """Silences the bus keeps: after opening the port and between two requests."""

    connect_gap_s: float = 0.1
    request_gap_s: float = 0.0
    open_timeout_s: float = 5.0
    #: after a timeout, keep that slave's next read back until its late answers have come
    #: (RTU: answers carry no request id; TCP matches them by transaction id)
    settle_after_timeout: bool = True


@dataclass(frozen=True)
class OneOffRead:
    """A read a technician asks the running agent for, outside the polling plan."""

    unit: int
    kind: RegisterKind
    address: int
    count: int
    timeout_s: float = 1.0


class ModbusBus:
    """A `Driver` polling every slave of one bus through one `ModbusLink`."""

    def __init__(
        self,
        name: str,
        link: ModbusLink,
        slaves: Sequence[Slave],
        timing: BusTiming = BusTiming(),
        *,
        reopen: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.link = link
        self.slaves = list(slaves)
        self.timing = timing
        #: reopening the port or connection (docs/logs.md): `modbus.bus.failed`, `.failed_again`, `.recovered`
        self._reopen = RetrySeries(log, "modbus.bus", reopen or Backoff(initial_s=0.5, cap_s=30.0), bus=name)
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self._quiet_until = 0.0
        self._opens = self._losses = self._requests = 0
        self._timeouts = self._refusals = 0
        #: one-off reads asked for through the agent (`gateway modbus read --via-agent`), served
        #: between two polls so they never interleave with one on the wire
        self._one_off: deque[tuple[OneOffRead, asyncio.Future[list[int]]]] = deque()
        self._one_off_ready = asyncio.Event()

    async def read_once(self, read: OneOffRead) -> list[int]:
        """Queue one read between two polls and return its words (the caller bounds the wait)."""
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._one_off.append((read, done))
        self._one_off_ready.set()
        return await done

    def statistics(self) -> BusStatistics:
        """A snapshot of the counters."""
        return BusStatistics(
            bus=self.name,
            is_open=self.link.is_open,
            opens=self._opens,
            losses=self._losses,
            requests=self._requests,
            timeouts=self._timeouts,
            exception_responses=self._refusals,
            slaves=tuple(
                SlaveStatistics(
                    s.sensor,
                    s.unit,
                    s.breaker.state.value,
                    s.polls_ok,
                    s.polls_failed,
                    s.exception_responses,
                    len(s.reads),
                )
                for s in self.slaves
            ),
        )

    async def run(self, sink: Sink) -> None:
        """Poll forever; a lost port is reopened here, so this only ends when cancelled."""
        for slave in self.slaves:
            slave.last_data = self._clock()
        try:
            while True:
                await self._open(sink)
                try:
                    await self._serve(sink)
                except BusLost as exc:
                    self._losses += 1
                    self.link.close()
                    log.warning("modbus bus lost", bus=self.name, error=str(exc))
                    self._event(sink, "bus_lost", str(exc))
        finally:
            self.link.close()

    async def _open(self, sink: Sink) -> None:
        while True:
            try:
                await self.link.open(self.timing.open_timeout_s)
            except BusLost as exc:
                self._check_stale(sink)
                if not self._reopen.failing:
                    self._event(sink, "bus_unavailable", str(exc))
                await self._sleep(self._reopen.failed(exc))
                continue
            self._opens += 1
            attempts = self._reopen.failures + 1
            if self._reopen.succeeded(after_loss=self._losses > 0, attempts=attempts):
                self._event(sink, "bus_open", str(self.link.endpoint))
            self._quiet_until = self._clock() + self.timing.connect_gap_s
            return

    async def _serve(self, sink: Sink) -> None:
        while True:
            await self._serve_one_offs()
            self._check_stale(sink)
            slave = min(self.slaves, key=Slave.due_at)
            now = self._clock()
            stale_at = min(s.stale_at() for s in self.slaves)
            if stale_at < slave.due_at():
                await self._idle(max(0.0, stale_at - now))
                continue
            delay = slave.due_at() - now
            if delay > 0 and await self._idle(delay):
                continue  # a one-off read came in: serve it, then look at the schedule again
            await self.poll(slave, sink)

    async def _idle(self, delay: float) -> bool:
        """Sleep `delay`, or less when a one-off read comes in (then True)."""
        if self._one_off:
            return True
        self._one_off_ready.clear()
        napping = asyncio.ensure_future(self._sleep(delay))
        woken = asyncio.ensure_future(self._one_off_ready.wait())
        try:
            await asyncio.wait((napping, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when the bus is cancelled meanwhile: nothing is left pending
            for task in (napping, woken):
                task.cancel()
        return bool(self._one_off)

    async def _serve_one_offs(self) -> None:
        """Every queued one-off read, one request each, keeping the bus's silences."""
        while self._one_off:
            read, done = self._one_off.popleft()
            if done.done():  # the caller gave up waiting
                continue
            await self._wait_until(self._quiet_until)
            self._requests += 1
            try:
                words = await self.link.read(read.kind, read.unit, read.address, read.count, read.timeout_s)
            except (SlaveTimeout, ExceptionResponse, ProtocolError, BusLost) as exc:
                if not done.done():
                    done.set_exception(exc)
                if isinstance(exc, BusLost):
                    raise  # the bus is reopened as after a failed poll
            else:
                if not done.done():
                    done.set_result(words)
            finally:
                self._quiet_until = self._clock() + self.timing.request_gap_s

    def _check_stale(self, sink: Sink) -> None:
        now = self._clock()
        for slave in self.slaves:
            if now < slave.stale_at():
                continue
            slave.stale = True
            silent_s = now - (slave.last_data or now)
            log.warning("modbus sensor stale", sensor=slave.sensor, silent_s=round(silent_s, 1))
            self._event(sink, "stale", f"no readings for {silent_s:.1f} s", source=slave.sensor)

    async def poll(self, slave: Slave, sink: Sink) -> None:
        """Run one poll of `slave`: every planned read, readings into `sink`."""
        answered = False
        pending = list(slave.reads)
        try:
            while pending:
                read = pending.pop(0)
                try:
                    values = await self._request(slave, read)
                except ExceptionResponse as exc:
                    answered = True
                    pending[:0] = self._refused(slave, read, exc, sink)
                    continue
                answered = True
                self._accepted(slave, read, sink)
                self._fresh(slave, sink)
                ts_ms = int(self._wall() * 1000)
                for reading in readings_from_answer(
                    slave.sensor, slave.register_map, slave.fields, read, values, ts_ms
                ):
                    sink.reading(reading)
        except (SlaveTimeout, ProtocolError) as exc:
            self._failed(slave, exc, sink)
        else:
            self._answered(slave, sink, answered)
        finally:
            slave.schedule_next(self._clock())

    async def _request(self, slave: Slave, read: PlannedRead) -> list[int]:
        """One read, retried after timeouts; a late answer is never taken for another read's."""
        attempts = 1 + (slave.retries if slave.breaker.retries_allowed else 0)
        await self._wait_until(slave.settle_until)
        first_sent: float | None = None
        timed_out = False
        for attempt in range(attempts):
            await self._wait_until(self._quiet_until)
            sent = self._clock()
            first_sent = sent if first_sent is None else first_sent
            self._requests += 1
            try:
                return await self.link.read(read.kind, slave.unit, read.address, read.count, slave.timeout_s)
            except SlaveTimeout:
                self._timeouts += 1
                timed_out = True
                if attempt + 1 == attempts:
                    raise
            finally:
                now = self._clock()
                self._quiet_until = now + self.timing.request_gap_s
                if timed_out and self.timing.settle_after_timeout:
                    # RTU answers carry no request id: the answers to this read's earlier attempts
                    # may still come, and must not be taken for the answer to the slave's next read
                    slave.settle_until = now + (sent - first_sent) + slave.timeout_s
        raise AssertionError("unreachable")  # pragma: no cover

    async def _wait_until(self, moment: float) -> None:
        delay = moment - self._clock()
        if delay > 0:
            await self._sleep(delay)

    def _answered(self, slave: Slave, sink: Sink, answered: bool) -> None:
        if not answered:
            return
        slave.polls_ok += 1
        failed_polls = slave.breaker.failures
        if slave.breaker.succeeded() is SlaveState.ALIVE:
            log.info("modbus slave answers again", bus=self.name, sensor=slave.sensor)
            self._event(sink, "slave_alive", f"{slave.sensor} (unit {slave.unit})")
        elif failed_polls:
            log.info("modbus poll recovered", bus=self.name, sensor=slave.sensor, failed_polls=failed_polls)

    def _failed(self, slave: Slave, exc: Exception, sink: Sink) -> None:
        """WARNING on the first failed poll of a series and when the slave is declared dead, else DEBUG."""
        slave.polls_failed += 1
        first = slave.breaker.failures == 0
        if slave.breaker.failed(self._clock()) is SlaveState.DEAD:
            log.warning(
                "modbus slave dead; probing it slowly",
                bus=self.name,
                sensor=slave.sensor,
                unit=slave.unit,
                error=str(exc),
            )
            self._event(sink, "slave_dead", f"{slave.sensor} (unit {slave.unit}): {exc}")
        elif first:
            log.warning("modbus poll failed", bus=self.name, sensor=slave.sensor, error=str(exc))
        else:
            log.debug("modbus poll failed again", bus=self.name, sensor=slave.sensor, error=str(exc))

    def _refused(
        self, slave: Slave, read: PlannedRead, exc: ExceptionResponse, sink: Sink
    ) -> list[PlannedRead]:
        """Flag the refused fields' readings; returns the reads to do instead, now (if any)."""
        self._refusals += 1
        slave.exception_responses += 1
        if exc.code == _ILLEGAL_DATA_ADDRESS and len(read.fields) > 1:
            # a merged read may span a hole the device refuses: fall back to one read per field
            index = slave.reads.index(read)
            parts = split_read(read, slave.fields)
            slave.reads[index : index + 1] = parts
            log.warning("modbus read refused; splitting it", sensor=slave.sensor, read=_where(read))
            return parts
        for reading in refused_readings(slave.sensor, slave.fields, read, int(self._wall() * 1000)):
            sink.reading(reading)
        if slave.refusals.get(read) != exc.code:
            slave.refusals[read] = exc.code
            log.warning("modbus exception response", sensor=slave.sensor, read=_where(read), code=exc.name)
            self._event(sink, "exception_response", f"{slave.sensor} {_where(read)}: {exc.name}")
        return []

    def _accepted(self, slave: Slave, read: PlannedRead, sink: Sink) -> None:
        code = slave.refusals.pop(read, None)
        if code is not None:
            log.info("modbus read accepted again", sensor=slave.sensor, read=_where(read))
            self._event(sink, "exception_cleared", f"{slave.sensor} {_where(read)}: {exception_name(code)}")

    def _fresh(self, slave: Slave, sink: Sink) -> None:
        slave.last_data = self._clock()
        if slave.stale:
            slave.stale = False
            log.info("modbus sensor recovered", sensor=slave.sensor)
            self._event(sink, "recovered", "data flows again", source=slave.sensor)

    def _event(self, sink: Sink, kind: str, detail: str, source: str | None = None) -> None:
        sink.event(HealthEvent(int(self._wall() * 1000), source or self.name, kind, detail))


def _where(read: PlannedRead) -> str:
    return f"{read.kind} {read.address}+{read.count}"
