"""The receiver's MQTT transport: QoS 1 with MANUAL acknowledgement, after the commit.

paho acknowledges a QoS 1 message (PUBACK) as soon as it handed it to aiomqtt's queue, before the
batch was verified or stored: a `kill -9` then lost 6,437 of 8,000 queued batches, which the
gateways had already deleted. Here paho's manual ack is switched on (aiomqtt 2.5.1 has no option for
it, so through its paho client) and each message is acknowledged only after the transaction holding
it committed (intake.Committer). Unacknowledged messages stay in the broker's session (clean_session
false, a stable client id) and come again after a reconnect; the store drops them as duplicates.
The broker's in-flight window (Mosquitto `max_inflight_messages`, 20 by default) bounds how many
unacknowledged messages this client holds, and the committer's queue bounds what waits to be stored.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as mqtt
import structlog

from gateway.receiver.core import Arrival
from gateway.receiver.intake import Committer
from gateway.receiver.verdict import Verdict
from kernel.backoff import Backoff
from kernel.errors import StorageError, UplinkError, first_leaf
from kernel.retry import RetrySeries

log = structlog.get_logger(__name__)

TOPIC = "gateways/+/batches"


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to subscribe (`gateway receiver --broker ... --share-group ...`)."""

    host: str
    port: int
    client_id: str = "gateway-receiver"
    topic: str = TOPIC
    #: subscribe through `$share/<group>/<topic>`: the broker spreads messages over the group's members
    share_group: str | None = None
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None

    @property
    def subscription(self) -> str:
        """The topic filter subscribed to."""
        return self.topic if self.share_group is None else f"$share/{self.share_group}/{self.topic}"


class BatchSubscriber:
    """Subscribes with a persistent session and feeds the committer until cancelled, reconnecting."""

    def __init__(self, committer: Committer, settings: BrokerSettings, *, clock: Callable[[], int]) -> None:
        self._committer = committer
        self._settings = settings
        self._clock = clock
        self.connected = False
        self.acknowledged = 0
        #: broker sessions: `receiver.broker.failed` once per outage, `.recovered` on the next subscription
        self._broker = RetrySeries(log, "receiver.broker", Backoff(initial_s=0.2, cap_s=10.0))

    async def run(self) -> None:
        """Receive forever, reconnecting with backoff; the broker keeps what arrives meanwhile."""
        while True:
            try:
                await self._session()
            except (aiomqtt.MqttError, UplinkError, StorageError, ExceptionGroup) as exc:
                leaf = first_leaf(exc)
                if not isinstance(leaf, aiomqtt.MqttError | UplinkError | StorageError):
                    raise
                await asyncio.sleep(self._broker.failed(leaf))

    async def _session(self) -> None:
        s = self._settings
        client = aiomqtt.Client(
            s.host, s.port, identifier=s.client_id, clean_session=False, keepalive=30,
            username=s.username, password=s.password, tls_context=s.tls,
        )  # fmt: skip
        paho = client._client
        paho.manual_ack_set(True)
        failed: asyncio.Future[StorageError] = asyncio.get_running_loop().create_future()
        async with client:
            await client.subscribe(s.subscription, qos=1)
            self.connected = True  # only now: the subscription exists
            self._broker.succeeded()  # a failure after this starts a new series: WARNING again
            log.info("receiver subscribed", host=s.host, port=s.port, subscription=s.subscription)
            try:
                async with asyncio.TaskGroup() as tasks:
                    reader = tasks.create_task(self._read(client, failed))
                    error = await failed  # a storage failure ends the session: the broker redelivers
                    reader.cancel()
                    raise error
            finally:
                self.connected = False

    async def _read(self, client: aiomqtt.Client, failed: asyncio.Future[StorageError]) -> None:
        acks = _Acknowledgements(client._client)
        async for message in client.messages:
            mid, qos = message.mid, message.qos
            claimed = _gateway_of(str(message.topic))
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""

            def settle(result: Verdict | StorageError, mid: int = mid, qos: int = qos) -> None:
                if isinstance(result, StorageError):
                    if not failed.done():
                        failed.set_result(result)
                    return
                if qos > 0 and not failed.done():
                    acks.add(mid)
                    self.acknowledged += 1

            await self._committer.submit(Arrival(bytes(payload), claimed, self._clock()), settle)


class _Acknowledgements:
    """PUBACKs of one session, written together: a committed group's verdicts all come in one turn of
    the event loop, and its acknowledgements leave in one socket write after it instead of one
    write each (paho's `ack`: 4,072 sends took 0.18 s for 4,000 messages, cProfile of the receiver).

    paho 2.x queues a PUBACK as the 4 bytes 0x40 0x02 <mid>; several of them in one queued packet
    are the same bytes on the wire. Without that private queue (another paho), each goes via `ack`.
    """

    def __init__(self, paho: mqtt.Client) -> None:
        self._paho = paho
        self._mids: list[int] = []

    def add(self, mid: int) -> None:
        """Acknowledge `mid` (QoS 1) at the end of this turn of the event loop."""
        if not self._mids:
            asyncio.get_running_loop().call_soon(self._send)
        self._mids.append(mid)

    def _send(self) -> None:
        mids, self._mids = self._mids, []
        queue = getattr(self._paho, "_packet_queue", None)
        if queue is None:
            for mid in mids:
                self._paho.ack(mid, 1)
            return
        queue(mqtt.PUBACK, b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids), 0, 1)


_PUBACK = struct.Struct("!BBH")


def _gateway_of(topic: str) -> str | None:
    """The gateway id a `<prefix>/<id>/<suffix>` topic names (checked against the body's), None for
    other layouts; an id outside the alphabet never matches a body's, so the batch is refused."""
    parts = topic.split("/")
    return parts[1] if len(parts) == 3 else None
