"""What every serial codec is: bytes in, events out, no clock and no I/O (h11 style).

A codec is fed whatever the port delivered (`feed`), then drained with `next_event()` until it
returns `NEED_DATA`. Events are `Sample` (measurements of one frame, without a timestamp: the
transport stamps them on reception), `Reply` (a device's answer to a command) or an instance of a
`ProtocolError` subclass (a bad checksum, a malformed frame): those are *returned*, never raised,
so one corrupt frame never stops a driver. Garbage skipped while resynchronising is only counted.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import NamedTuple

from kernel.errors import ProtocolError
from kernel.model import Quality


class NeedData(enum.Enum):
    """The sentinel type of `NEED_DATA`: feed more bytes before asking again."""

    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA


class Measurement(NamedTuple):
    """One value a frame carried: quantity (lower_snake_case), value, SenML unit, quality.

    A NamedTuple rather than a frozen dataclass: codecs create millions, and it is 3x cheaper.
    """

    quantity: str
    value: float
    unit: str
    quality: Quality = Quality.OK


class Sample(NamedTuple):
    """The measurements decoded from one frame; `kind` names the frame type (MDA, XDR, ...)."""

    kind: str
    measurements: tuple[Measurement, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """A device's answer to a command (mode set, sleep/wake acknowledged, ...)."""

    kind: str
    detail: str = ""


class ChecksumMismatch(ProtocolError):
    """A complete frame whose checksum does not match its content (line noise, baud mismatch)."""


class MalformedFrame(ProtocolError):
    """A frame with a valid envelope whose content does not follow the protocol."""


Event = Sample | Reply | ProtocolError


@dataclass(frozen=True, slots=True)
class CodecStatistics:
    """Counters of one codec since it was created."""

    frames: int = 0
    checksum_errors: int = 0
    malformed: int = 0
    ignored: int = 0
    garbage_bytes: int = 0


@dataclass(slots=True)
class _Counters:
    frames: int = 0
    checksum_errors: int = 0
    malformed: int = 0
    ignored: int = 0
    garbage_bytes: int = 0

    def snapshot(self) -> CodecStatistics:
        return CodecStatistics(**{f.name: getattr(self, f.name) for f in fields(self)})


class Codec:
    """Shared event queue and counters; subclasses implement `_parse` over `self._buffer`."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._events: deque[Event] = deque()
        self._counters = _Counters()

    def feed(self, data: bytes) -> None:
        """Append bytes received from the device and decode every complete frame."""
        self._buffer += data
        self._parse()

    def next_event(self) -> Event | NeedData:
        """Return the next decoded event, or NEED_DATA when more bytes are needed."""
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    def events(self) -> Iterator[Event]:
        """Yield every event decoded so far (the h11 `next_event` loop as an iterator)."""
        while self._events:
            yield self._events.popleft()

    def statistics(self) -> CodecStatistics:
        """Return the counters (frames, checksum errors, malformed, ignored, garbage bytes)."""
        return self._counters.snapshot()

    def _emit_error(self, error: ProtocolError) -> None:
        if isinstance(error, ChecksumMismatch):
            self._counters.checksum_errors += 1
        else:
            self._counters.malformed += 1
        self._events.append(error)

    def _parse(self) -> None:
        raise NotImplementedError


class LineCodec(Codec):
    """A codec for ASCII protocols: frames are lines ended by LF (CR stripped), bounded in length."""

    max_line = 512
    #: length of the line being decoded as received (with its CR LF), for garbage accounting
    _raw_length = 0

    def _parse(self) -> None:
        buffer = self._buffer
        data = bytes(buffer)
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line = data[start : end - 1] if data[end - 1 : end] == b"\r" else data[start:end]
            self._raw_length = end + 1 - start
            start = end + 1
            self._decode_checked(line)
        del buffer[:start]
        if len(buffer) > self.max_line:
            # No terminator within a frame's length: it is not a frame, resynchronise.
            self._counters.garbage_bytes += len(buffer)
            buffer.clear()

    def _decode_checked(self, line: bytes) -> None:
        try:
            self._decode_line(line)
        except (ValueError, IndexError, KeyError, OverflowError) as exc:
            self._emit_error(MalformedFrame(f"{type(exc).__name__}: {exc}: {line[:80]!r}"))

    def _decode_line(self, line: bytes) -> None:
        raise NotImplementedError


def finite(text: bytes | str) -> float:
    """Parse a decimal number, rejecting NaN and infinities (ValueError) that devices never mean."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def scaled(value: float, factor: float) -> float:
    """value * factor without binary noise (1.013 bar is 101300 Pa, not 101299.99999999999)."""
    if factor == 1.0:
        return value
    return finite(f"{value * factor:.10g}")
