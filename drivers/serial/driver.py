"""One serial sensor as the runtime sees it: keeps its port open, decodes, stamps, emits.

The port is reopened by a `kernel.retry.RetrySeries` whenever it vanishes (WARNING on the first
failure of a series, DEBUG for the repeats, INFO on recovery); a sensor that sends no valid data
for `stale_after_s` emits HealthEvent(kind="stale"), and kind="recovered" when data returns.
Readings are stamped with the gateway wall clock when their bytes were received.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from drivers.base import DriverSpec, Sink
from drivers.serial.codec import Codec, CodecStatistics, Sample
from drivers.serial.config import SerialSection
from drivers.serial.transport import SerialLine
from kernel.backoff import Backoff
from kernel.errors import DeviceError, ProtocolError
from kernel.model import HealthEvent, Reading
from kernel.retry import RetrySeries
from kernel.wallclock import now_ms

log = structlog.get_logger(__name__)


class Line(Protocol):
    """What the driver needs from an open port (SerialLine, or a fake in tests)."""

    port: str

    async def read(self) -> bytes:
        """Return the next chunk; DeviceError when the port is gone."""
        ...

    async def write(self, data: bytes) -> None:
        """Send a command; DeviceError when the port is gone."""
        ...

    async def close(self) -> None:
        """Release the port."""
        ...


class Poller(Protocol):
    """Writes the commands a query-mode sensor needs, with the device's timing, while data is read."""

    async def drive(self, line: Line) -> None:
        """Run the command schedule on an open line until cancelled (DeviceError if it fails)."""
        ...


Opener = Callable[[SerialSection], Awaitable[Line]]


@dataclass(frozen=True, slots=True)
class SerialDriverStatistics:
    """Counters of one serial sensor driver (the codec's counters included)."""

    port: str
    connected: bool
    stale: bool
    bytes_received: int
    samples: int
    readings: int
    port_failures: int
    codec: CodecStatistics


@dataclass(slots=True)
class _State:
    connected: bool = False
    stale: bool = False
    bytes_received: int = 0
    samples: int = 0
    readings: int = 0
    port_failures: int = 0
    failing: bool = False
    last_data: float = field(default_factory=time.monotonic)
    protocol_warned: bool = False


class SerialDriver:
    """Runs one serial sensor: `run(sink)` until cancelled."""

    def __init__(
        self,
        spec: DriverSpec[SerialSection],
        codec: Codec,
        *,
        poller: Poller | None = None,
        opener: Opener = SerialLine.open,
    ) -> None:
        self.name = spec.sensor_id
        self._section = spec.section
        self._stale_after_s = spec.stale_after_s
        self._codec = codec
        self._poller = poller
        self._opener = opener
        self._state = _State()
        self._log = log.bind(sensor=self.name, port=spec.section.port)

    def statistics(self) -> SerialDriverStatistics:
        """Return the driver's and its codec's counters."""
        s = self._state
        return SerialDriverStatistics(
            port=self._section.port,
            connected=s.connected,
            stale=s.stale,
            bytes_received=s.bytes_received,
            samples=s.samples,
            readings=s.readings,
            port_failures=s.port_failures,
            codec=self._codec.statistics(),
        )

    async def run(self, sink: Sink) -> None:
        """Keep the port open and decode it forever; only cancellation ends this."""
        self._state.last_data = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch_stale(sink))
            await self._keep_port_open(sink)

    async def _keep_port_open(self, sink: Sink) -> None:
        backoff = Backoff(initial_s=self._section.reopen_initial_s, cap_s=self._section.reopen_cap_s)
        series = RetrySeries(self._log, "serial.port", backoff)
        while True:
            try:
                line = await self._opener(self._section)
            except DeviceError as exc:
                await asyncio.sleep(self._port_failed(exc, series, sink))
                continue
            self._port_opened(series)
            try:
                await self._session(line, sink)
            except DeviceError as exc:
                delay = self._port_failed(exc, series, sink)
            else:  # a poller that ended: reopen after a pause, as after a failure, without a report
                delay = backoff.next_delay()
            finally:
                self._state.connected = False
                await line.close()
            await asyncio.sleep(delay)

    async def _session(self, line: Line, sink: Sink) -> None:
        if self._poller is None:
            await self._pump(line, sink)
            return
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump(line, sink))
                tasks.create_task(self._poller.drive(line))
        except* DeviceError as group:
            raise group.exceptions[0] from None

    async def _pump(self, line: Line, sink: Sink) -> None:
        while True:
            data = await line.read()
            ts_ms = now_ms()
            self._state.bytes_received += len(data)
            self._codec.feed(data)
            for event in self._codec.events():
                if isinstance(event, Sample):
                    self._emit(event, ts_ms, sink)
                elif isinstance(event, ProtocolError):
                    self._protocol_error(event)

    def _emit(self, sample: Sample, ts_ms: int, sink: Sink) -> None:
        state = self._state
        state.samples += 1
        if not sample.measurements:
            return
        state.last_data = time.monotonic()
        state.protocol_warned = False
        if state.stale:
            state.stale = False
            sink.event(HealthEvent(ts_ms, self.name, "recovered", "data flows again"))
            self._log.info("sensor recovered")
        for m in sample.measurements:
            sink.reading(Reading(self.name, m.quantity, ts_ms, m.value, m.unit, m.quality))
        state.readings += len(sample.measurements)

    def _protocol_error(self, error: ProtocolError) -> None:
        if self._state.protocol_warned:
            self._log.debug("protocol error", error=str(error), kind=type(error).__name__)
            return
        self._state.protocol_warned = True
        self._log.warning("protocol error", error=str(error), kind=type(error).__name__)

    def _port_opened(self, series: RetrySeries) -> None:
        state = self._state
        state.connected = True
        state.failing = False
        if not series.succeeded(failures=state.port_failures):
            self._log.debug("serial port open")

    def _port_failed(self, exc: DeviceError, series: RetrySeries, sink: Sink) -> float:
        state = self._state
        state.port_failures += 1
        if not series.failing:  # the first of a series is a health event too
            sink.event(HealthEvent(now_ms(), self.name, "port_lost", str(exc)))
        state.failing = True
        return series.failed(exc)

    async def _watch_stale(self, sink: Sink) -> None:
        while True:
            state = self._state
            silent_s = time.monotonic() - state.last_data
            if state.stale:
                await asyncio.sleep(min(1.0, self._stale_after_s))
                continue
            if silent_s < self._stale_after_s:
                await asyncio.sleep(max(0.05, self._stale_after_s - silent_s))
                continue
            state.stale = True
            detail = f"no valid data for {silent_s:.1f} s"
            sink.event(HealthEvent(now_ms(), self.name, "stale", detail))
            self._log.warning("sensor stale", silent_s=round(silent_s, 1))
