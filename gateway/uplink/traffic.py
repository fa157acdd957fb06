"""What the uplink costs: bytes and segments on its connections, per UTC day, per reading delivered.

Application bytes are the batches (and HTTP answers) the agent itself writes and reads. Where Linux
gives them (TCP_INFO: tcpi_bytes_acked, tcpi_bytes_received, tcpi_segs_out, tcpi_segs_in), the TCP
payload bytes and segments of the same connections are counted too: they include TLS records and
MQTT or HTTP framing, and with HEADER_BYTES per segment estimate what the carrier bills.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from buffer import TrafficDay

#: IPv4 (20) + TCP with timestamps (32) per segment: what a carrier counts besides the payload
HEADER_BYTES = 52
DAY_MS = 86_400_000
#: days of totals kept (memory and the buffer's traffic_day table): a month's bill and a few days more
KEEP_DAYS = 35
#: the span `gateway status` sums up as "the last 30 days" (today included)
MONTH_DAYS = 30


def tcp_info(sock: socket.socket) -> tuple[int, int, int, int] | None:
    """(bytes acked, bytes received, segments out, segments in), or None where TCP_INFO lacks them."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, 256)
    except (OSError, ValueError):
        return None
    if len(info) < 144:  # tcpi_bytes_acked (offset 120) .. tcpi_segs_in (140): Linux 4.2 and later
        return None
    acked, received = struct.unpack_from("QQ", info, 120)
    segs_out, segs_in = struct.unpack_from("II", info, 136)
    return int(acked), int(received), int(segs_out), int(segs_in)


@dataclass
class DayTotals:
    """One UTC day of uplink traffic."""

    day: int  # days since 1970-01-01 (UTC)
    app_sent: int = 0
    app_received: int = 0
    tcp_sent: int = 0
    tcp_received: int = 0
    segments_out: int = 0
    segments_in: int = 0
    readings: int = 0

    def on_air(self) -> int:
        """TCP payload both ways plus HEADER_BYTES per segment (0 without TCP_INFO)."""
        return self.tcp_sent + self.tcp_received + HEADER_BYTES * (self.segments_out + self.segments_in)

    def spent(self) -> int:
        """On the air where the kernel counted the connections, else what the agent itself sent and read."""
        return self.on_air() or self.app_sent + self.app_received

    def add(self, other: DayTotals) -> None:
        """Add `other`'s counts to these."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class TrafficStatistics:
    """Uplink traffic since start and for the current and previous UTC day."""

    app_bytes_sent: int
    app_bytes_received: int
    tcp_bytes_sent: int
    tcp_bytes_received: int
    tcp_segments_out: int
    tcp_segments_in: int
    #: estimated bytes on the air today (TCP payload + 52 header bytes per segment)
    today_bytes_on_air: int
    today_readings: int
    #: today's bytes on the air per reading delivered (application bytes without TCP_INFO; None before
    #: the first reading)
    today_bytes_per_reading: float | None
    yesterday_bytes_on_air: int
    yesterday_readings: int
    tls_resumed: int = 0
    #: application bytes sent and received today (what counts where TCP_INFO is missing)
    today_app_bytes: int = 0
    #: the last 30 UTC days, today included, restarts included (kept in the buffer database)
    last_30_days_bytes_on_air: int = 0
    last_30_days_readings: int = 0
    #: application bytes sent and received in those days (what counts where TCP_INFO is missing)
    last_30_days_app_bytes: int = 0


@dataclass
class Traffic:
    """Counts traffic; `sample` a socket whenever convenient, its growth since the last sample is added.

    Per-day totals survive a restart through `restore` (at start) and `unsaved` (now and then): the
    agent keeps them in the buffer database (buffer/traffic_days.py).
    """

    total: DayTotals = field(default_factory=lambda: DayTotals(0))
    days: dict[int, DayTotals] = field(default_factory=dict)
    _seen: dict[tuple[int, int], tuple[int, int, int, int]] = field(default_factory=dict)
    #: days counted into since they were last handed to `unsaved`
    _changed: set[int] = field(default_factory=set)

    def _day(self, now_ms: int) -> DayTotals:
        day = now_ms // DAY_MS
        totals = self.days.get(day)
        if totals is None:
            totals = self.days[day] = DayTotals(day)
            for old in [d for d in self.days if d <= day - KEEP_DAYS]:
                del self.days[old]
        return totals

    def _counted(self, now_ms: int) -> tuple[DayTotals, DayTotals]:
        today = self._day(now_ms)
        self._changed.add(today.day)
        return self.total, today

    def restore(self, days: Iterable[TrafficDay]) -> None:
        """Add the totals an earlier run stored (at start: what this run counted so far stays)."""
        for stored in days:
            totals = self.days.setdefault(stored.day, DayTotals(stored.day))
            totals.add(DayTotals(**dataclasses.asdict(stored)))

    def unsaved(self) -> list[TrafficDay]:
        """The days counted into since the last call, to be stored (whole, replacing the stored row)."""
        changed, self._changed = self._changed, set()
        return [_stored(self.days[day]) for day in sorted(changed) if day in self.days]

    def not_saved(self, days: Iterable[TrafficDay]) -> None:
        """Storing `days` failed: hand them out again next time."""
        self._changed.update(day.day for day in days)

    def keep_from(self, now_ms: int) -> int:
        """The oldest day kept: stored days before it may go."""
        return now_ms // DAY_MS - KEEP_DAYS + 1

    def application(self, now_ms: int, *, sent: int = 0, received: int = 0, readings: int = 0) -> None:
        """Bytes the agent wrote and read itself, and readings the backend acknowledged."""
        for totals in self._counted(now_ms):
            totals.app_sent += sent
            totals.app_received += received
            totals.readings += readings

    def sample(self, sock: socket.socket | None, now_ms: int, *, closing: bool = False) -> None:
        """Add what the kernel counted on `sock` since its last sample (forgotten when closing)."""
        if sock is None:
            return
        try:
            key = (sock.fileno(), sock.getsockname()[1])
        except (OSError, ValueError, IndexError, TypeError):
            return
        info = tcp_info(sock)
        if info is None:
            return
        # tcpi_bytes_acked counts our SYN as one byte: a connection's first sample starts from 1
        before = self._seen.pop(key, (1, 0, 0, 0)) if closing else self._seen.get(key, (1, 0, 0, 0))
        if not closing:
            self._seen[key] = info
        sent, received, segs_out, segs_in = (max(0, a - b) for a, b in zip(info, before, strict=True))
        for totals in self._counted(now_ms):
            totals.tcp_sent += sent
            totals.tcp_received += received
            totals.segments_out += segs_out
            totals.segments_in += segs_in

    def statistics(self, now_ms: int, *, tls_resumed: int = 0) -> TrafficStatistics:
        """Counters for status and metrics."""
        today = self._day(now_ms)
        yesterday = self.days.get(today.day - 1, DayTotals(today.day - 1))
        month = DayTotals(today.day)
        for totals in self.days.values():
            if totals.day > today.day - MONTH_DAYS:
                month.add(totals)
        per_reading = round(today.spent() / today.readings, 2) if today.readings else None
        return TrafficStatistics(
            app_bytes_sent=self.total.app_sent,
            app_bytes_received=self.total.app_received,
            tcp_bytes_sent=self.total.tcp_sent,
            tcp_bytes_received=self.total.tcp_received,
            tcp_segments_out=self.total.segments_out,
            tcp_segments_in=self.total.segments_in,
            today_bytes_on_air=today.on_air(),
            today_readings=today.readings,
            today_bytes_per_reading=per_reading,
            yesterday_bytes_on_air=yesterday.on_air(),
            yesterday_readings=yesterday.readings,
            tls_resumed=tls_resumed,
            today_app_bytes=today.app_sent + today.app_received,
            last_30_days_bytes_on_air=month.on_air(),
            last_30_days_readings=month.readings,
            last_30_days_app_bytes=month.app_sent + month.app_received,
        )


_COUNTS = tuple(f.name for f in dataclasses.fields(DayTotals) if f.name != "day")


def _stored(totals: DayTotals) -> TrafficDay:
    return TrafficDay(**dataclasses.asdict(totals))
