"""What a reconnect costs on the air: TLS session resumption and the keepalive a carrier NAT needs.

A full TLS 1.3 handshake with the broker's certificate chain cost 3,315 bytes on the air per connect
in bench/air_bench.py (relay counts, 52 header bytes per segment); a resumed one sends no
certificate. Python's ssl takes a previous `SSLSession` in `wrap_socket(session=...)`, which paho
calls on its context (and `wrap_bio`, which asyncio calls for aiohttp); `ResumingContext` hands them the
last session it saw.
"""

from __future__ import annotations

import math
import socket
import ssl
from typing import Any

#: the keepalive leaves this share of the NAT timeout as margin (timers on both sides are coarse)
NAT_MARGIN = 0.1
#: the MQTT keepalive is this many NAT keepalives: TCP keepalive probes hold the NAT mapping open
#: (two bare segments, 104 bytes on the air, against 204 for an MQTT PINGREQ/PINGRESP in TLS records),
#: the MQTT keepalive only lets the broker forget a gateway that vanished (within 1.5 times it)
MQTT_KEEPALIVE_IN_NAT_KEEPALIVES = 4
#: OpenSSL's SSL_OP_TLSEXT_PADDING (part of the SSL_OP_ALL Python sets; the ssl module has no name for it)
OP_TLSEXT_PADDING = 0x10
#: unanswered TCP keepalive probes before the kernel fails the connection (a dead link is noticed
#: 3 probe intervals after the idle time)
TCP_KEEPALIVE_PROBES = 3
#: on the air (bench/air_bench.py, Mosquitto 2.0.11, TLS 1.3, MQTT 5, the close included): one TCP
#: keepalive probe and its ACK, a connect resuming the TLS session, a connect with a full handshake
KEEPALIVE_EXCHANGE_BYTES = 104
RESUMED_RECONNECT_BYTES = 1_817
FULL_RECONNECT_BYTES = 2_848


def keepalive_for(nat_timeout_s: float) -> int:
    """The keepalive (whole seconds) that keeps a NAT mapping of `nat_timeout_s` alive."""
    return max(1, math.floor(nat_timeout_s * (1 - NAT_MARGIN)))


def mqtt_keepalive_for(nat_timeout_s: float) -> int:
    """The MQTT keepalive when TCP keepalives hold the NAT open (MQTT allows at most 65,535 s)."""
    return min(65_535, MQTT_KEEPALIVE_IN_NAT_KEEPALIVES * keepalive_for(nat_timeout_s))


def closing_pays(quiet_s: float, keepalive_s: float, *, resumed: bool) -> bool:
    """Whether closing the link now and connecting again in `quiet_s` costs fewer bytes than the TCP
    keepalive probes that would hold it open until then.

    A resumed connect is worth 17 probe exchanges, a full one 27: at NAT 300 s, 4,700 and 7,400 s.
    """
    reconnect = RESUMED_RECONNECT_BYTES if resumed else FULL_RECONNECT_BYTES
    return math.floor(quiet_s / keepalive_s) * KEEPALIVE_EXCHANGE_BYTES > reconnect


def hold_nat_open(sock: socket.socket, nat_timeout_s: float) -> bool:
    """TCP keepalive probes on an idle connection before the NAT forgets it; False where the OS lacks them."""
    idle = keepalive_for(nat_timeout_s)
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), idle),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), max(1, idle // 10)),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), TCP_KEEPALIVE_PROBES),
    ]
    try:
        for level, option, value in options:
            if option is None:
                return False
            sock.setsockopt(level, option, value)
    except OSError:
        return False
    return True


class ResumingContext(ssl.SSLContext):
    """A client TLS context that resumes the previous session on the next connection."""

    def __new__(cls, cafile: str | None = None, *, tls13_only: bool = False) -> ResumingContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, cafile: str | None = None, *, tls13_only: bool = False) -> None:
        # PROTOCOL_TLS_CLIENT (set in __new__) verifies the certificate and the host name
        if tls13_only:
            # no TLS 1.2 cipher suites and extensions: OpenSSL 3.0's ClientHello shrinks from 517
            # bytes to 243. Nor the RFC 7685 padding to 512 bytes (a workaround for TLS 1.2-era
            # load balancers that hang on hellos of 256-511 bytes): a resumed hello carries the
            # broker's ticket, and against a broker with stateful resumption (small PSK identities)
            # the padding alone would cost 180 of the 357 bytes a resumed connect saves (docs/lte.md)
            self.minimum_version = ssl.TLSVersion.TLSv1_3
            self.options &= ~OP_TLSEXT_PADDING
            # nor RFC 8446 D.4's middlebox compatibility mode: a made-up 32-byte session id the server
            # echoes and a ChangeCipherSpec record each way, there only to make TLS 1.3 look like a
            # resumed TLS 1.2 session to boxes that inspect it. 70 bytes of every connect, resumed or
            # not (1,887 -> 1,817 on the air, bench/air_bench.py against Mosquitto 2.0.11)
            self.options &= ~ssl.OP_ENABLE_MIDDLEBOX_COMPAT
        if cafile is not None:
            self.load_verify_locations(cafile)
        else:
            self.load_default_certs()
        self._last: ssl.SSLSocket | ssl.SSLObject | None = None
        self._session: ssl.SSLSession | None = None
        #: connections that resumed a session instead of a full handshake
        self.resumed = 0
        self._counted = False

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        """paho's wrap: the same, offering the last session for resumption."""
        self.remember()
        if self._session is not None and "session" not in kwargs:
            kwargs["session"] = self._session
        self._last, self._counted = super().wrap_socket(sock, *args, **kwargs), False
        return self._last

    def wrap_bio(
        self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *args: Any, **kwargs: Any
    ) -> ssl.SSLObject:
        """asyncio's wrap (aiohttp): the same, offering the last session for resumption."""
        self.remember()
        if self._session is not None and "session" not in kwargs:
            kwargs["session"] = self._session
        self._last, self._counted = super().wrap_bio(incoming, outgoing, *args, **kwargs), False
        return self._last

    def resumes_at(self, when_s: float) -> bool:
        """Whether a connect at `when_s` (wall clock, s) can resume the session: the broker's ticket
        lifetime (7,200 s from Mosquitto, OpenSSL's default) not yet over."""
        session = self._session
        return session is not None and when_s < session.time + session.timeout

    def remember(self) -> None:
        """Keep the current connection's session (TLS 1.3 tickets arrive after the handshake)."""
        last = self._last
        if last is None:
            return
        try:
            session = last.session
            if last.session_reused and not self._counted:
                self.resumed, self._counted = self.resumed + 1, True
        except (ValueError, OSError):  # closed already
            return
        if session is not None and session.has_ticket:
            self._session = session
