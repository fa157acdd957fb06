"""MQTT framing costs on a real Mosquitto: topic aliases (the topic once per connection, 3.1.1 as the
fallback) and no keepalive pings while batches flow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from seal_record import record_seals

from buffer import Store, StoreOptions
from gateway import wire
from gateway.batcher import Batcher
from gateway.config import UplinkConfig
from gateway.sealing import Due, SealingRules
from gateway.supervisor import Supervised
from gateway.uplink.mqtt import MqttUplink
from hil.broker import Mosquitto
from kernel.model import Reading

KEY = Ed25519PrivateKey.generate()
T0 = 1_780_000_000_000
GATEWAY = "rostock-gw-0001"
TOPIC = f"gateways/{GATEWAY}/batches"
BATCHES = 6


async def publish_batches(store: Store, port: int, protocol: str) -> tuple[MqttUplink, list[bytes]]:
    """BATCHES batches sealed one by one and sent over one connection; what the uplink counted."""
    sealed = asyncio.Event()
    config = UplinkConfig.model_validate(
        {"mqtt": {"host": "127.0.0.1", "port": port, "protocol": protocol}, "ack_timeout_s": 5}
    )
    uplink = MqttUplink(store, config, gateway_id=GATEWAY, sealed=sealed)
    batcher = Batcher(
        store, gateway_id=GATEWAY, private_key=KEY, kid=wire.kid_for(KEY.public_key()), declare=wire.SeriesInfo,
        due=Due(SealingRules(max_delay_ms=1000, target_readings=1000)), max_readings=1000, sealed=sealed,
    )  # fmt: skip
    blobs = record_seals(store)
    # as in the agent: a supervisor restarts the uplink after a failed connect (0.5 s backoff)
    task = asyncio.create_task(Supervised("uplink", uplink.run).run())
    for n in range(BATCHES):
        store.submit([Reading("s1", "t", T0 + n * 1000 + i, float(i), "Cel") for i in range(20)])
        await batcher.seal_due()
        async with asyncio.timeout(10):
            while store.undelivered(limit=10):
                await asyncio.sleep(0.02)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return uplink, blobs


async def received_while(
    port: int, work: asyncio.Future[tuple[MqttUplink, list[bytes]]]
) -> list[tuple[str, bytes]]:
    """What a subscriber on the broker gets (topic, payload) while `work` runs."""
    got: list[tuple[str, bytes]] = []
    async with aiomqtt.Client("127.0.0.1", port) as subscriber:
        await subscriber.subscribe("gateways/+/batches", qos=1)

        async def listen() -> None:
            async for message in subscriber.messages:
                got.append((str(message.topic), bytes(message.payload)))  # type: ignore[arg-type]

        listening = asyncio.create_task(listen())
        await work
        async with asyncio.timeout(10):
            while len(got) < BATCHES:
                await asyncio.sleep(0.02)
        listening.cancel()
    return got


def test_mqtt_5_names_the_topic_once_and_sends_fewer_bytes_than_3_1_1(tmp_path: Path) -> None:
    sent: dict[str, int] = {}
    with Mosquitto(tmp_path / "broker") as broker:
        for protocol in ("3.1.1", "5"):
            with Store.open(
                tmp_path / f"buffer-{protocol}.db", StoreOptions(commit_interval_s=0.01)
            ) as store:

                async def scenario(store: Store = store, protocol: str = protocol) -> None:
                    work = asyncio.ensure_future(publish_batches(store, broker.port, protocol))
                    got = await received_while(broker.port, work)
                    uplink, blobs = work.result()
                    assert got == [(TOPIC, blob) for blob in blobs]  # the broker restored every topic
                    traffic = uplink.statistics().traffic
                    assert traffic is not None and uplink.statistics().connects == 1
                    sent[protocol] = traffic.tcp_bytes_sent

                asyncio.run(scenario())
    # every PUBLISH after the first carries alias 1 (3 property bytes) instead of the 32-byte topic
    assert sent["3.1.1"] - sent["5"] >= (BATCHES - 1) * (len(TOPIC) - 4) - 8


async def _refuse_mqtt_5(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, broker_port: int, refused: list[int]
) -> None:
    """A broker front that speaks only 3.1.1: a version-5 CONNECT gets CONNACK 0x84, a 3.1.1 one is
    relayed to the real Mosquitto."""
    head = await reader.readexactly(2)  # CONNECT fixed header; these are short, one length byte
    rest = await reader.readexactly(head[1])
    if rest[6] == 5:  # protocol name "MQTT" (2 + 4 bytes), then the level
        refused.append(5)
        writer.write(bytes([0x20, 0x03, 0x00, 0x84, 0x00]))
        await writer.drain()
        writer.close()
        return
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", broker_port)
    up_writer.write(head + rest)

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


def test_a_broker_that_refuses_mqtt_5_gets_3_1_1_and_every_batch(tmp_path: Path) -> None:
    refused: list[int] = []
    with (
        Mosquitto(tmp_path / "broker") as broker,
        Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store,
    ):

        async def scenario() -> None:
            front = await asyncio.start_server(
                lambda r, w: _refuse_mqtt_5(r, w, broker.port, refused), "127.0.0.1", 0
            )
            port = front.sockets[0].getsockname()[1]
            work = asyncio.ensure_future(publish_batches(store, port, "5"))
            got = await received_while(broker.port, work)
            assert got == [(TOPIC, blob) for blob in work.result()[1]]
            front.close()

        asyncio.run(scenario())
    assert refused == [5]  # refused once, then 3.1.1 for good


@pytest.mark.slow  # 11 s of keepalives by design: out of `make test-fast`
def test_no_mqtt_ping_while_batches_flow_and_one_when_they_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A PUBLISH answered by a PUBACK within the keepalive makes a PINGREQ pointless (MQTT 5.0,
    3.1.2.10): paho alone sends one every keepalive anyway (its issue 813), 48 bytes and 2-3
    segments on the air each time. Once the batches stop, the keepalive pings again."""
    caplog.set_level(logging.DEBUG, logger="mqtt")  # paho logs every packet it sends there
    with (
        Mosquitto(tmp_path / "broker") as broker,
        Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store,
    ):
        sealed = asyncio.Event()
        config = UplinkConfig.model_validate(
            {"mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 2}, "connect_on_demand": False}
        )
        uplink = MqttUplink(store, config, gateway_id=GATEWAY, sealed=sealed)
        batcher = Batcher(
            store, gateway_id=GATEWAY, private_key=KEY, kid=wire.kid_for(KEY.public_key()), declare=wire.SeriesInfo,
            due=Due(SealingRules(max_delay_ms=1000, target_readings=1000)), max_readings=1000, sealed=sealed,
        )  # fmt: skip

        async def scenario() -> tuple[int, int]:
            task = asyncio.create_task(uplink.run())
            for n in range(10):  # a batch every 0.6 s for 6 s: three keepalives
                store.submit([Reading("s1", "t", T0 + n * 1000, float(n), "Cel")])
                await batcher.seal_due()
                await asyncio.sleep(0.6)
            while_flowing = pings(caplog)
            await asyncio.sleep(4.5)  # nothing to send for two keepalives
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return while_flowing, pings(caplog)

        while_flowing, in_all = asyncio.run(scenario())
    assert uplink.statistics().batches_acked == 10
    assert while_flowing == 0
    assert in_all >= 1


def pings(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.name == "mqtt" and r.getMessage() == "Sending PINGREQ")
