"""What the uplink costs: bytes and segments on its connections, per UTC day, per reading delivered.

Application bytes are the batches (and HTTP answers) the agent itself writes and reads. Where Linux
gives them (TCP_INFO: tcpi_bytes_acked, tcpi_bytes_received, tcpi_segs_out, tcpi_segs_in), the TCP
payload bytes and segments of the same connections are counted too: they include TLS records and
MQTT or HTTP framing, and with HEADER_BYTES per segment estimate what the carrier bills.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

#: IPv4 (20) + TCP with timestamps (32) per segment: what a carrier counts besides the payload
HEADER_BYTES = 52
DAY_MS = 86_400_000


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


@dataclass
class Traffic:
    """Counts traffic; `sample` a socket whenever convenient, its growth since the last sample is added."""

    total: DayTotals = field(default_factory=lambda: DayTotals(0))
    today: DayTotals = field(default_factory=lambda: DayTotals(0))
    yesterday: DayTotals = field(default_factory=lambda: DayTotals(-1))
    _seen: dict[tuple[int, int], tuple[int, int, int, int]] = field(default_factory=dict)

    def _day(self, now_ms: int) -> DayTotals:
        day = now_ms // DAY_MS
        if day != self.today.day:
            self.yesterday = self.today if self.today.day == day - 1 else DayTotals(day - 1)
            self.today = DayTotals(day)
        return self.today

    def application(self, now_ms: int, *, sent: int = 0, received: int = 0, readings: int = 0) -> None:
        """Bytes the agent wrote and read itself, and readings the backend acknowledged."""
        for totals in (self.total, self._day(now_ms)):
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
        for totals in (self.total, self._day(now_ms)):
            totals.tcp_sent += sent
            totals.tcp_received += received
            totals.segments_out += segs_out
            totals.segments_in += segs_in

    def statistics(self, now_ms: int, *, tls_resumed: int = 0) -> TrafficStatistics:
        """Counters for status and metrics."""
        today = self._day(now_ms)
        # on the air where the kernel counted the connection, else what the agent itself sent and read
        spent = today.on_air() or today.app_sent + today.app_received
        per_reading = round(spent / today.readings, 2) if today.readings else None
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
            yesterday_bytes_on_air=self.yesterday.on_air(),
            yesterday_readings=self.yesterday.readings,
            tls_resumed=tls_resumed,
        )
