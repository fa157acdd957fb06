"""HTTPS uplink: every outbox batch is POSTed on its own; the response's status settles it.

2xx: delivered (deleted from the outbox; the reference receiver answers 202 for a batch it holds in its
quarantine until the key is enrolled). 409 or 422: the backend refuses these exact bytes for good, so
resending cannot help: the batch is given up as gap records that travel in the next batch
(`Store.reject_batch`), and the rest of the outbox moves on. Anything else (403 from a backend that
does not know the key yet or for a URL naming another gateway, 5xx, 429, a timeout, no route) keeps
the batch and raises UplinkError; the agent's supervisor retries with backoff.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from functools import partial
from typing import Any

import aiohttp
import structlog
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from buffer import OutboxEntry, Store
from gateway.config import HttpsConfig, UplinkConfig
from gateway.uplink.delivery import Delivery, Uplink, UplinkState, UplinkStatistics
from gateway.uplink.session import ResumingContext
from gateway.uplink.traffic import Traffic
from gateway.wire import MEDIA_TYPE
from kernel.errors import ConfigError, UplinkError, first_leaf

log = structlog.get_logger(__name__)

#: statuses that refuse a batch's bytes for good (the receiver's 409 replay and 422 invalid batch)
REFUSED_FOR_GOOD = frozenset({409, 422})


def tls_context(config: HttpsConfig) -> ResumingContext:
    """Server verification against ca_file (or the system's anchors), a client certificate if given."""
    try:
        context = ResumingContext(str(config.ca_file) if config.ca_file else None)
        if config.client_cert_file is not None:
            key = str(config.client_key_file) if config.client_key_file else None
            context.load_cert_chain(str(config.client_cert_file), key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"uplink.https: cannot load the TLS files: {exc}") from exc
    return context


def bearer_token(config: HttpsConfig) -> str | None:
    if config.token_file is None:
        return None
    try:
        token = config.token_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"uplink.https.token_file: {exc}") from exc
    if not token:
        raise ConfigError(f"uplink.https.token_file: {config.token_file} is empty")
    return token


class CountedConnector(aiohttp.TCPConnector):
    """A TCP connector that remembers its connections' sockets, for the traffic counters (TCP_INFO)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sockets: dict[int, socket.socket] = {}

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (the signature of aiohttp.TCPConnector.connect)
    ) -> Connection:
        """The pool's connection for `req`; its socket is noted."""
        connection = await super().connect(req, traces, timeout)
        transport = connection.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        sock = getattr(sock, "_sock", sock)  # asyncio's TransportSocket wraps the real one
        if isinstance(sock, socket.socket):
            self._sockets[sock.fileno()] = sock
        return connection

    def sample(self, traffic: Traffic, now_ms: int) -> None:
        """Add what the kernel counted on every connection since the last sample; forget closed ones."""
        for fd, sock in list(self._sockets.items()):
            if sock.fileno() != fd:  # closed (fileno -1) or its descriptor reused
                del self._sockets[fd]
                continue
            traffic.sample(sock, now_ms)


class HttpsUplink(Uplink):
    """Sends the outbox in seq order, up to max_inflight requests at a time."""

    def __init__(self, store: Store, config: UplinkConfig, *, gateway_id: str, sealed: asyncio.Event) -> None:
        assert config.https.url is not None  # the config model requires it for this transport
        self._config = config
        self._url = config.https.url.format(gateway_id=gateway_id)
        self._tls = tls_context(config.https)  # a bad file is a ConfigError at start, not a retry loop
        self._headers = {"Content-Type": MEDIA_TYPE}
        token = bearer_token(config.https)
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self.state: UplinkState = "connecting"
        self._delivery = Delivery(store, sealed=sealed, max_inflight=config.max_inflight)
        self._on_demand = config.connect_on_demand

    async def _session(self) -> None:
        """One client session: its connections are kept alive (and TLS resumed by the context's cache)
        until a request fails or, on demand, the link stays idle for the NAT timeout."""
        self.state = "connecting"
        # keep-alive longer than the NAT: an idle connection the NAT forgot would only fail the next POST
        connector = CountedConnector(
            ssl=self._tls, limit=self._config.max_inflight, keepalive_timeout=self._config.nat_timeout_s * 0.9
        )
        timeout = aiohttp.ClientTimeout(total=self._config.ack_timeout_s)
        idle_s = self._config.nat_timeout_s if self._config.connect_on_demand else None
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=self._headers
            ) as session:
                await self._delivery.send_forever(
                    partial(self._send, session, connector),
                    idle_s=idle_s,
                    may_idle=lambda: self.quiet_for() is None,
                )
        except* (UplinkError, aiohttp.ClientError, TimeoutError, OSError) as group:
            first = first_leaf(group)
            raise first if isinstance(first, UplinkError) else UplinkError(f"HTTPS: {first!r}") from None
        finally:
            self.state = "disconnected"

    async def _send(
        self, session: aiohttp.ClientSession, connector: CountedConnector, entry: OutboxEntry
    ) -> None:
        async with session.post(self._url, data=entry.blob) as response:
            answer = await response.content.read(200)  # any bytes, bounded
            detail = answer.decode("utf-8", "replace")
            status = response.status
        connector.sample(self._delivery.traffic, self._delivery.clock())
        self._tls.remember()
        if status in REFUSED_FOR_GOOD:
            await self._delivery.refused(entry, f"{status} {detail}")
            return
        if not 200 <= status < 300:
            raise UplinkError(f"HTTPS: batch {entry.seq}: {status} {detail}")
        if self.state != "connected":
            self.state = "connected"
            self._delivery.connects += 1
            log.info("uplink connected", url=self._url)
        await self._delivery.acknowledged(entry, received=len(answer))

    def statistics(self) -> UplinkStatistics:
        """Counters for status and metrics (with the TLS sessions resumed)."""
        return self._delivery.statistics(self.state, tls_resumed=self._tls.resumed)
