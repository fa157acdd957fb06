"""MQTT uplink (QoS 1): an outbox row counts as delivered only after the broker's PUBACK."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Literal

import aiomqtt
import structlog

from buffer import OutboxEntry, Store
from gateway.config import UplinkConfig
from gateway.errors import UplinkError

log = structlog.get_logger(__name__)

UplinkState = Literal["connecting", "connected", "disconnected"]


@dataclass(frozen=True)
class UplinkStatistics:
    """What the uplink did so far."""

    state: UplinkState
    connects: int
    batches_acked: int
    readings_acked: int
    last_acked_seq: int | None


class MqttUplink:
    """Sends the outbox in seq order with a bounded number of batches in flight; reconnects via its supervisor."""

    def __init__(self, store: Store, config: UplinkConfig, *, gateway_id: str, sealed: asyncio.Event) -> None:
        self._store = store
        self._config = config
        self._topic = config.mqtt.topic.format(gateway_id=gateway_id)
        self._client_id = config.mqtt.client_id or f"gateway-{gateway_id}"
        self._sealed = sealed
        self.state: UplinkState = "connecting"
        #: set after every acknowledged batch (waiters clear it themselves)
        self.delivered = asyncio.Event()
        self._connects = 0
        self._acked = 0
        self._readings = 0
        self._last_seq: int | None = None

    def _client(self) -> aiomqtt.Client:
        mqtt = self._config.mqtt
        tls = None
        if mqtt.tls:
            tls = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
        return aiomqtt.Client(
            mqtt.host,
            mqtt.port,
            identifier=self._client_id,
            username=mqtt.username,
            password=mqtt.password,
            keepalive=mqtt.keepalive_s,
            timeout=self._config.ack_timeout_s,
            tls_context=tls,
            max_inflight_messages=self._config.max_inflight,
        )

    async def run(self) -> None:
        """Connect, then send until the connection fails (raises UplinkError; the supervisor reconnects)."""
        self.state = "connecting"
        try:
            async with self._client() as client:
                self.state = "connected"
                self._connects += 1
                log.info("uplink connected", host=self._config.mqtt.host, port=self._config.mqtt.port)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._watch(client))
                    tasks.create_task(self._send_forever(client))
        except* (aiomqtt.MqttError, TimeoutError, OSError) as group:
            raise UplinkError(f"MQTT: {group.exceptions[0]!r}") from None
        finally:
            self.state = "disconnected"

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Notice a lost connection even while there is nothing to send."""
        await client.subscribe(f"{self._topic}/control", qos=1)
        async for _message in client.messages:
            pass  # reserved for backend -> gateway control messages

    async def _send_forever(self, client: aiomqtt.Client) -> None:
        while True:
            self._sealed.clear()
            entries = await asyncio.to_thread(self._store.undelivered, limit=self._config.max_inflight)
            if not entries:
                await self._sealed.wait()
                continue
            async with asyncio.timeout(self._config.ack_timeout_s), asyncio.TaskGroup() as tasks:
                for entry in entries:  # tasks start in creation order: publishes leave in seq order
                    tasks.create_task(self._send(client, entry))

    async def _send(self, client: aiomqtt.Client, entry: OutboxEntry) -> None:
        await client.publish(self._topic, entry.blob, qos=1)
        await asyncio.to_thread(self._store.mark_delivered, entry.seq)
        self._acked += 1
        self._readings += entry.readings
        self._last_seq = entry.seq
        self.delivered.set()
        log.info("batch delivered", seq=entry.seq, readings=entry.readings)

    def statistics(self) -> UplinkStatistics:
        """Counters for status and metrics."""
        return UplinkStatistics(self.state, self._connects, self._acked, self._readings, self._last_seq)
