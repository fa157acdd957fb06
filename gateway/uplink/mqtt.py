"""MQTT uplink (QoS 1): an outbox row counts as delivered only after the broker's PUBACK."""

from __future__ import annotations

import asyncio
import ssl
from functools import partial

import aiomqtt
import structlog

from buffer import OutboxEntry, Store
from gateway.config import UplinkConfig
from gateway.errors import UplinkError
from gateway.uplink.delivery import Delivery, Uplink, UplinkState

log = structlog.get_logger(__name__)


class MqttUplink(Uplink):
    """Sends the outbox in seq order with a bounded number of batches in flight; reconnects via its supervisor."""

    def __init__(self, store: Store, config: UplinkConfig, *, gateway_id: str, sealed: asyncio.Event) -> None:
        self._config = config
        self._topic = config.mqtt.topic.format(gateway_id=gateway_id)
        self._client_id = config.mqtt.client_id or f"gateway-{gateway_id}"
        self.state: UplinkState = "connecting"
        self._delivery = Delivery(store, sealed=sealed, max_inflight=config.max_inflight)

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
                self._delivery.connects += 1
                log.info("uplink connected", host=self._config.mqtt.host, port=self._config.mqtt.port)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._watch(client))
                    send = partial(self._send, client)
                    tasks.create_task(self._delivery.send_forever(send, timeout_s=self._config.ack_timeout_s))
        except* (aiomqtt.MqttError, TimeoutError, OSError) as group:
            raise UplinkError(f"MQTT: {group.exceptions[0]!r}") from None
        finally:
            self.state = "disconnected"

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Notice a lost connection even while there is nothing to send."""
        await client.subscribe(f"{self._topic}/control", qos=1)
        async for _message in client.messages:
            pass  # reserved for backend -> gateway control messages

    async def _send(self, client: aiomqtt.Client, entry: OutboxEntry) -> None:
        await client.publish(self._topic, entry.blob, qos=1)
        await self._delivery.acknowledged(entry)
