"""One P2P LoRa modem on a serial port: set it up, listen, decode, emit; reopen on failure.

Reuses the serial transport (`drivers.serial.transport.SerialLine`); the line protocols are
in `protocol.py`. Set-up commands wait for their answer (COMMAND_TIMEOUT_S each); a modem that
does not answer is a DeviceError and the port is reopened by a `kernel.retry.RetrySeries`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

import structlog

from drivers.base import DriverSpec, Sink
from drivers.lora.codecs import PayloadCodec, codec_for
from drivers.lora.config import ModemSection
from drivers.lora.modem.protocol import (
    Info,
    ModemEvent,
    Noise,
    Packet,
    Rak3172Protocol,
    Reply,
    Rn2483Protocol,
    RxEnded,
)
from drivers.lora.readings import measurement_readings, signal_readings
from drivers.serial.driver import Line
from kernel.backoff import Backoff
from kernel.errors import DeviceError, ProtocolError
from kernel.model import HealthEvent
from kernel.retry import RetrySeries
from kernel.wallclock import now_ms

log = structlog.get_logger(__name__)

COMMAND_TIMEOUT_S = 3.0
#: RUI3 answers AT+NWM=0 at once if at all (it may restart first); then it is polled until back
MODE_SWITCH_ANSWER_S = 1.0
RESTART_POLL_S = 0.5
RESTART_POLLS = 20


class _NoAnswer(DeviceError):
    """A command timed out (the modem may be restarting)."""


Opener = Callable[[ModemSection], Awaitable[Line]]


async def open_serial(section: ModemSection) -> Line:
    """Open the modem's port with the serial helper's transport."""
    from drivers.serial.config import SerialSection
    from drivers.serial.transport import SerialLine

    return await SerialLine.open(SerialSection(port=section.port, baud=section.effective_baud()))


@dataclass(frozen=True)
class ModemStatistics:
    """Counters of one modem driver."""

    packets: int
    decode_errors: int
    noise_lines: int
    reopens: int
    rx_restarts: int


class ModemDriver:
    """A Driver for a RAK3172 (RUI3) or RN2483 in LoRa P2P receive mode."""

    def __init__(
        self, sensor_id: str, section: ModemSection, codec: PayloadCodec, opener: Opener = open_serial
    ):
        self.name = f"lora-modem:{sensor_id}"
        self.sensor_id = sensor_id
        self._section = section
        self._codec = codec
        self._opener = opener
        self._counts: Counter[str] = Counter()

    @classmethod
    def from_spec(cls, spec: DriverSpec[ModemSection]) -> ModemDriver:
        """The driver of one configured modem sensor."""
        section = spec.section
        return cls(spec.sensor_id, section, codec_for(section.codec, section.js_file, section.js_timeout_ms))

    def statistics(self) -> ModemStatistics:
        """A snapshot of the counters."""
        c = self._counts
        return ModemStatistics(c["packets"], c["decode_errors"], c["noise"], c["reopens"], c["rx_restarts"])

    def _protocol(self) -> Rak3172Protocol | Rn2483Protocol:
        return Rak3172Protocol() if self._section.modem == "rak3172" else Rn2483Protocol()

    async def run(self, sink: Sink) -> None:
        """Keep the modem listening until cancelled, reopening the port after failures."""
        s = self._section
        series = RetrySeries(
            log, "lora_modem", Backoff(s.reopen_initial_s, s.reopen_cap_s), sensor=self.sensor_id
        )
        while True:
            try:
                line = await self._opener(s)
            except DeviceError as exc:
                await asyncio.sleep(self._failed(exc, series, sink))
                continue
            try:
                await self._session(line, sink, series)
            except DeviceError as exc:
                delay = self._failed(exc, series, sink)
                self._counts["reopens"] += 1
            finally:
                await line.close()
            await asyncio.sleep(delay)

    def _failed(self, exc: DeviceError, series: RetrySeries, sink: Sink) -> float:
        if not series.failing:  # the first of a series is a health event too
            sink.event(HealthEvent(now_ms(), self.sensor_id, "device_error", str(exc)))
        return series.failed(exc)

    async def _session(self, line: Line, sink: Sink, series: RetrySeries) -> NoReturn:
        protocol = self._protocol()
        s = self._section
        events: list[ModemEvent] = []
        commands = protocol.setup_commands(
            s.frequency_hz, s.spreading_factor, s.bandwidth_khz, s.coding_rate, s.preamble, s.tx_power_dbm
        )
        if isinstance(protocol, Rak3172Protocol):
            await self._ensure_p2p_mode(line, protocol, events)
        for command in commands:
            await self._command(line, protocol, command, events)
        series.succeeded()
        log.info("lora_modem.listening", sensor=self.sensor_id, modem=s.modem, freq=s.frequency_hz)
        for event in events:
            await self._handle(event, line, protocol, sink)
        while True:
            for event in protocol.feed(await line.read()):
                await self._handle(event, line, protocol, sink)

    async def _command(
        self,
        line: Line,
        protocol: Rak3172Protocol | Rn2483Protocol,
        command: str,
        backlog: list[ModemEvent],
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> list[str]:
        """Send one command and wait for its answer; returns the Info lines before the answer.

        Packets seen meanwhile, and whatever follows the answer in the same read, go to `backlog`.
        """
        await line.write(protocol.encode(command))
        info: list[str] = []
        answered = False
        try:
            async with asyncio.timeout(timeout_s):
                while not answered:
                    for event in protocol.feed(await line.read()):
                        if answered or isinstance(event, Packet):
                            backlog.append(event)
                        elif isinstance(event, Reply):
                            if not event.ok:
                                raise DeviceError(f"{self._section.port}: {command!r} answered {event.text}")
                            answered = True
                        elif isinstance(event, Info):
                            info.append(event.text)
                            answered = isinstance(protocol, Rn2483Protocol)  # one line answers
        except TimeoutError:
            raise _NoAnswer(f"{self._section.port}: no answer to {command!r}") from None
        return info

    async def _ensure_p2p_mode(
        self, line: Line, protocol: Rak3172Protocol, backlog: list[ModemEvent]
    ) -> None:
        """Switch RUI3 to P2P only when it is not (the switch restarts it), then wait until it is back."""
        await self._command(line, protocol, "AT", backlog)
        if protocol.in_p2p_mode(await self._command(line, protocol, protocol.MODE_QUERY, backlog)):
            return
        log.info("lora_modem.switching_to_p2p", sensor=self.sensor_id)
        with contextlib.suppress(_NoAnswer):  # it may restart before it answers
            await self._command(line, protocol, protocol.P2P_MODE, backlog, MODE_SWITCH_ANSWER_S)
        for _ in range(RESTART_POLLS):
            with contextlib.suppress(DeviceError):  # silent or busy while it boots
                answer = await self._command(line, protocol, protocol.MODE_QUERY, backlog, RESTART_POLL_S)
                if protocol.in_p2p_mode(answer):
                    return
        raise DeviceError(f"{self._section.port}: still not in P2P mode after {protocol.P2P_MODE}")

    async def _handle(
        self, event: ModemEvent, line: Line, protocol: Rak3172Protocol | Rn2483Protocol, sink: Sink
    ) -> None:
        if isinstance(event, Noise):
            self._counts["noise"] += 1
        elif isinstance(event, RxEnded) or (
            isinstance(event, Packet) and isinstance(protocol, Rn2483Protocol)
        ):
            if isinstance(event, RxEnded):
                self._counts["rx_restarts"] += 1
            else:
                self._packet(event, sink)
            # RN2483 leaves receive mode after each packet or error: listen again
            await line.write(protocol.encode(Rn2483Protocol.RECEIVE))
        elif isinstance(event, Packet):
            self._packet(event, sink)

    def _packet(self, packet: Packet, sink: Sink) -> None:
        self._counts["packets"] += 1
        ts = now_ms()
        if self._section.signal_readings and packet.rssi is not None:
            for reading in signal_readings(self.sensor_id, ts, packet.rssi, packet.snr):
                sink.reading(reading)
        try:
            measurements = self._codec.decode(self._section.fport, packet.payload)
        except ProtocolError as exc:
            self._counts["decode_errors"] += 1
            sink.event(HealthEvent(ts, self.sensor_id, "decode_error", str(exc)[:200]))
            return
        for reading in measurement_readings(self.sensor_id, ts, measurements):
            sink.reading(reading)
