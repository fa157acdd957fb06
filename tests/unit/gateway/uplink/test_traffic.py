"""Uplink traffic accounting: TCP_INFO of a real loopback connection, UTC days, bytes per reading."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from gateway.uplink.traffic import DAY_MS, HEADER_BYTES, Traffic, tcp_info

DAY1 = 20_600 * DAY_MS


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO byte and segment counters are Linux's")
def test_the_kernel_counts_of_a_real_connection_are_added_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            traffic = Traffic()
            client.sendall(b"x" * 5000)
            received = b""
            while len(received) < 5000:
                received += peer.recv(65536)
            peer.sendall(b"y" * 300)
            assert client.recv(1000)
            deadline = time.monotonic() + 5
            while (info := tcp_info(client)) is not None and info[0] < 5000 and time.monotonic() < deadline:
                time.sleep(0.01)  # bytes_acked follows the peer's ACK
            traffic.sample(client, DAY1)
            traffic.sample(client, DAY1)  # nothing new: nothing added twice
            traffic.application(DAY1, sent=5000, readings=100)
            stats = traffic.statistics(DAY1)
    assert stats.tcp_bytes_sent == 5000
    assert stats.tcp_bytes_received == 300
    assert stats.tcp_segments_out >= 1 and stats.tcp_segments_in >= 1
    segments = stats.tcp_segments_out + stats.tcp_segments_in
    assert stats.today_bytes_on_air == 5300 + HEADER_BYTES * segments
    assert stats.today_bytes_per_reading == round(stats.today_bytes_on_air / 100, 2)


def test_totals_roll_over_at_utc_midnight() -> None:
    traffic = Traffic()
    traffic.application(DAY1 + 1000, sent=700, readings=10)
    traffic.application(DAY1 + DAY_MS - 1, sent=300, readings=5)
    traffic.application(DAY1 + DAY_MS, sent=50, readings=1)
    stats = traffic.statistics(DAY1 + DAY_MS + 10)
    assert (stats.today_readings, stats.yesterday_readings) == (1, 15)
    assert stats.app_bytes_sent == 1050
    assert stats.today_bytes_per_reading == 50.0  # without TCP_INFO: the agent's own bytes
    later = traffic.statistics(DAY1 + 5 * DAY_MS)  # days without traffic: nothing carried over
    assert (later.today_readings, later.yesterday_readings) == (0, 0)
