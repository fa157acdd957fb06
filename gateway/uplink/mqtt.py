"""MQTT uplink (QoS 1): an outbox row counts as delivered only after the broker's PUBACK.

What the link costs is kept small (docs/lte.md): the keepalive follows the carrier's NAT timeout,
TLS sessions are resumed on reconnect, and with `connect_on_demand` a link with nothing to send is
closed once keeping it open would cost more than opening it again, and opened when a batch is sealed.
"""

from __future__ import annotations

import asyncio
import socket
from functools import partial
from typing import Any

import aiomqtt
import paho.mqtt.client as paho_mqtt
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from buffer import OutboxEntry, Store
from gateway.config import UplinkConfig
from gateway.uplink.delivery import Delivery, Uplink, UplinkState, UplinkStatistics
from gateway.uplink.session import (
    ResumingContext,
    closing_pays,
    hold_nat_open,
    keepalive_for,
    mqtt_keepalive_for,
)
from gateway.uplink.topic_alias import TopicAlias
from kernel.errors import UplinkError

log = structlog.get_logger(__name__)

#: bytes of a PUBACK (fixed header + packet id; MQTT 5 leaves out a success reason code): what the
#: agent reads per batch
PUBACK_BYTES = 4
#: CONNACK codes of a broker that does not speak MQTT 5: 1 (3.1.1, "unacceptable protocol version")
#: and 0x84 (5.0, "unsupported protocol version")
REFUSES_PROTOCOL = frozenset({1, 0x84})


class MqttUplink(Uplink):
    """Sends the outbox in seq order with a bounded number of batches in flight; reconnects via its supervisor."""

    def __init__(self, store: Store, config: UplinkConfig, *, gateway_id: str, sealed: asyncio.Event) -> None:
        self._config = config
        self._topic = config.mqtt.topic.format(gateway_id=gateway_id)
        self._client_id = config.mqtt.client_id or f"gateway-{gateway_id}"
        self._keepalive = keepalive_for(config.nat_timeout_s)
        self._mqtt_keepalive = config.mqtt.keepalive_s or mqtt_keepalive_for(config.nat_timeout_s)
        mqtt = config.mqtt
        self._tls = (
            ResumingContext(
                str(mqtt.ca_file) if mqtt.ca_file else None, tls13_only=mqtt.tls_min_version == "1.3"
            )
            if mqtt.tls
            else None
        )
        self.state: UplinkState = "connecting"
        self._delivery = Delivery(store, sealed=sealed, max_inflight=config.max_inflight)
        self._on_demand = config.connect_on_demand
        self._v5 = config.mqtt.protocol == "5"
        self._alias = TopicAlias(self._topic)

    def _client(self) -> aiomqtt.Client:
        mqtt = self._config.mqtt
        client = aiomqtt.Client(
            mqtt.host,
            mqtt.port,
            identifier=self._client_id,
            username=mqtt.username,
            password=mqtt.password,
            keepalive=self._mqtt_keepalive,
            timeout=self._config.ack_timeout_s,
            tls_context=self._tls,
            max_inflight_messages=self._config.max_inflight,
            protocol=aiomqtt.ProtocolVersion.V5 if self._v5 else aiomqtt.ProtocolVersion.V311,
        )
        self._alias.connected(0)
        if self._v5:
            self._hear_connack(client)
        return client

    def _hear_connack(self, client: aiomqtt.Client) -> None:
        """Learn the broker's Topic Alias Maximum from its CONNACK: aiomqtt drops the CONNACK's
        properties, so paho's callback (which aiomqtt installed) is wrapped."""
        paho: paho_mqtt.Client = client._client  # the one place that reaches under aiomqtt
        installed: Any = paho.on_connect  # paho types it as a union of its callback API versions
        alias = self._alias

        def on_connect(
            c: paho_mqtt.Client,
            userdata: object,
            flags: paho_mqtt.ConnectFlags,
            reason_code: ReasonCode,
            properties: Properties | None = None,
        ) -> None:
            alias.connected(int(getattr(properties, "TopicAliasMaximum", 0) or 0))
            if installed is not None:
                installed(c, userdata, flags, reason_code, properties)

        paho.on_connect = on_connect

    async def _session(self) -> None:
        """One connection: until it fails (UplinkError) or, on demand, stays idle."""
        self.state = "connecting"
        idle_s = self._config.nat_timeout_s if self._config.connect_on_demand else None
        try:
            async with self._client() as client:
                self.state = "connected"
                self._delivery.connects += 1
                sock = self._socket(client)
                if sock is None or not hold_nat_open(sock, self._config.nat_timeout_s):
                    log.warning("no TCP keepalive on the uplink: the NAT may drop an idle connection")
                log.info("uplink connected", host=self._config.mqtt.host, port=self._config.mqtt.port)
                try:
                    async with asyncio.TaskGroup() as tasks:
                        watch = tasks.create_task(self._watch(client))
                        send = partial(self._send, client)
                        await self._delivery.send_forever(
                            send,
                            timeout_s=self._config.ack_timeout_s,
                            idle_s=idle_s,
                            may_idle=self._may_idle,
                            close_at_once=self._closing_pays,
                        )
                        watch.cancel()
                finally:
                    self._account(client, closing=True)
            log.info("uplink idle, disconnected", idle_s=idle_s)
        except* MqttConnectError as group:
            self._fall_back(group.exceptions[0])
            raise UplinkError(f"MQTT: {group.exceptions[0]!r}") from None
        except* (aiomqtt.MqttError, TimeoutError, OSError) as group:
            raise UplinkError(f"MQTT: {group.exceptions[0]!r}") from None
        finally:
            self.state = "disconnected"

    @staticmethod
    def _packets_flowed(client: aiomqtt.Client) -> None:
        """A PUBLISH went out and its PUBACK came back: tell paho, so it sends no PINGREQ this keepalive.

        paho 2.x leaves `_last_msg_out` alone when its write queue empties (eclipse-paho/paho.mqtt.python
        issue 813), so it pings every keepalive however often it publishes: with batches every 900 s
        and a 1,080 s keepalive, 80 PINGREQ/PINGRESP exchanges a day, about 16 KB on the air
        (bench/air_bench.py profile a, 155 -> 139 KB/day). MQTT asks for a PINGREQ only "in the
        absence of sending any other control packets" (MQTT 5.0, 3.1.2.10).
        """
        paho: paho_mqtt.Client = client._client  # under aiomqtt, as in _hear_connack
        with paho._msgtime_mutex:
            now = paho_mqtt.time_func()
            paho._last_msg_out = paho._last_bytes_received = now

    def _fall_back(self, refused: BaseException) -> None:
        """A broker that refuses MQTT 5 gets 3.1.1 from the next connect on (and the topic in full)."""
        code = getattr(refused, "rc", None)
        value = code.value if isinstance(code, ReasonCode) else code
        if self._v5 and value in REFUSES_PROTOCOL:
            self._v5 = False
            log.warning("broker refuses MQTT 5, falling back to 3.1.1", code=value)

    def _may_idle(self) -> bool:
        """After `nat_timeout_s` idle: close unless the next seal is so near that keepalives are cheaper."""
        return self.quiet_for() is None or self._closing_pays()

    def _closing_pays(self) -> bool:
        """The next seal is further away than a reconnect is worth in keepalives: close at once, not
        after `nat_timeout_s` idle (one probe exchange less). Resumed if the session still is by then."""
        quiet = self.quiet_for()
        if quiet is None:
            return False  # nothing waits: when the next reading comes is unknown
        when = self._delivery.clock() / 1000 + quiet  # the wall clock, as the session's own time
        resumed = self._tls is None or self._tls.resumes_at(when)
        return closing_pays(quiet, self._keepalive, resumed=resumed)

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Notice a lost connection even while there is nothing to send.

        No subscription: nothing travels from the backend to the gateway yet, and a SUBSCRIBE and its
        SUBACK cost about 190 bytes on the air per connect (two TLS records and their segments).
        """
        if self._tls is not None:
            self._tls.remember()  # the broker's session tickets came with the CONNACK
        async for _message in client.messages:
            pass

    @staticmethod
    def _socket(client: aiomqtt.Client) -> socket.socket | None:
        """paho's socket under aiomqtt (TLS or not)."""
        paho = getattr(client, "_client", None)
        sock = paho.socket() if paho is not None else None
        return sock if isinstance(sock, socket.socket) else None

    def _account(self, client: aiomqtt.Client, *, closing: bool = False) -> None:
        if self._tls is not None:
            self._tls.remember()
        self._delivery.traffic.sample(self._socket(client), self._delivery.clock(), closing=closing)

    async def _send(self, client: aiomqtt.Client, entry: OutboxEntry) -> None:
        topic, properties = self._alias.next_publish()  # no await before the publish: order kept
        await client.publish(topic, entry.blob, qos=1, properties=properties)
        self._packets_flowed(client)
        await self._delivery.acknowledged(entry, received=PUBACK_BYTES)
        self._account(client)

    def statistics(self) -> UplinkStatistics:
        """Counters for status and metrics (with the TLS sessions resumed)."""
        return self._delivery.statistics(self.state, tls_resumed=self._tls.resumed if self._tls else 0)
