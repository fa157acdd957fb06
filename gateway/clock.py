"""Is the wall clock synchronised? The kernel's NTP state, watched once a second.

A Raspberry Pi has no battery-backed clock: after a boot without network it runs from the time
fake-hwclock saved at shutdown until NTP (systemd-timesyncd, chrony) steps it, often by hours or days.
Readings taken meanwhile carry Quality.CLOCK_UNSYNCED (the agent's StoreSink sets it). `ClockWatch`
reports every transition and every step of the wall clock as a health event, which travels with the
next batch. The details are JSON ({"boot", "since_ms", "step_ms", ...}). The `clock.synchronised`
event says by how much the flagged readings are off, so the backend can correct them (docs/buffer.md,
"Clock"; the reference receiver's `readings_corrected` view does).

The sync state is what `adjtimex(2)` returns (TIME_ERROR, or the STA_UNSYNC status bit, means not
synchronised), the state every NTP daemon on Linux maintains.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kernel.model import HealthEvent
from kernel.wallclock import now_ms

#: adjtimex(2): clock state TIME_ERROR and the status bit STA_UNSYNC
TIME_ERROR = 5
STA_UNSYNC = 0x0040


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """struct timex of <sys/timex.h> (Linux), up to `tai`, plus the reserved tail."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    )


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def kernel_clock_synchronised() -> bool | None:
    """The kernel's verdict (a read-only adjtimex call), or None where it cannot be asked."""
    libc = _libc()
    adjtimex = getattr(libc, "adjtimex", None)
    if adjtimex is None:
        return None
    timex = _Timex()  # modes = 0: read only
    state = int(adjtimex(ctypes.byref(timex)))
    if state < 0:
        return None
    return state != TIME_ERROR and not timex.status & STA_UNSYNC


def boot_id() -> str:
    """The kernel's id of this boot: wall clock timelines before and after a reboot differ."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class ClockSample:
    """The wall clock and the monotonic clock read together, and whether the wall clock is synchronised."""

    wall_ms: int
    monotonic_ms: int
    synchronised: bool


def sample_now(synchronised: Callable[[], bool | None] = kernel_clock_synchronised) -> ClockSample:
    """A sample of this machine's clocks; a platform that cannot tell counts as synchronised."""
    state = synchronised()
    return ClockSample(now_ms(), time.monotonic_ns() // 1_000_000, state is not False)


@dataclass(frozen=True, slots=True)
class ClockStatistics:
    synchronised: bool | None
    steps: int
    #: sum of the steps since the clock was last seen unsynchronised (what flagged readings are off by)
    unsynced_step_ms: int


class ClockWatch:
    """Sans-I/O: feed it samples, get health events for transitions and steps of the wall clock."""

    def __init__(self, *, step_threshold_ms: int = 1_000, boot: str | None = None) -> None:
        self._threshold = step_threshold_ms
        self._boot = boot_id() if boot is None else boot
        self.synchronised: bool | None = None  # None until the first sample
        self._offset: int | None = None  # wall - monotonic at the last sample
        self._steps = 0
        self._pending_step = 0  # steps since the clock was last seen unsynchronised
        self._unsynced_since: int | None = None

    def observe(self, sample: ClockSample) -> list[HealthEvent]:
        """Events for what changed since the previous sample."""
        events: list[HealthEvent] = []
        offset = sample.wall_ms - sample.monotonic_ms
        step = 0 if self._offset is None else offset - self._offset
        self._offset = offset
        if abs(step) >= self._threshold:
            self._steps += 1
            if self.synchronised is False or not sample.synchronised:
                self._pending_step += step
            events.append(
                self._event(sample, "clock.stepped", step_ms=step, synchronised=sample.synchronised)
            )
        if sample.synchronised and self.synchronised is False:
            since = self._unsynced_since
            events.append(
                self._event(sample, "clock.synchronised", since_ms=since, step_ms=self._pending_step)
            )
        elif not sample.synchronised and self.synchronised is not False:
            self._unsynced_since = sample.wall_ms
            self._pending_step = 0
            events.append(self._event(sample, "clock.unsynchronised", since_ms=sample.wall_ms))
        self.synchronised = sample.synchronised
        return events

    def _event(self, sample: ClockSample, kind: str, **facts: object) -> HealthEvent:
        detail = json.dumps({"boot": self._boot, **facts}, separators=(",", ":"))
        return HealthEvent(sample.wall_ms, "clock", kind, detail)

    def statistics(self) -> ClockStatistics:
        return ClockStatistics(self.synchronised, self._steps, self._pending_step)
