"""What the MQTT uplink costs on a real TLS Mosquitto: traffic accounting, idle disconnects, TLS resumption."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import sys
from collections.abc import Iterator
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
from gateway.uplink.session import closing_pays, hold_nat_open, keepalive_for, mqtt_keepalive_for
from hil.broker import Mosquitto
from hil.tls import ServerCertificate, loopback_certificate
from kernel.backoff import Backoff
from kernel.model import Reading

KEY = Ed25519PrivateKey.generate()
T0 = 1_780_000_000_000


def batcher_for(store: Store, gateway_id: str, sealed: asyncio.Event) -> Batcher:
    """A batcher that seals what a test submitted as soon as it asks (budgets of 1 s, 1,000 readings)."""
    return Batcher(
        store,
        gateway_id=gateway_id,
        private_key=KEY,
        kid=wire.kid_for(KEY.public_key()),
        declare=wire.SeriesInfo,
        due=Due(SealingRules(max_delay_ms=1000, target_readings=1000)),
        max_readings=1000,
        sealed=sealed,
    )


@contextlib.contextmanager
def tls_broker_and_store(tmp_path: Path) -> Iterator[tuple[Mosquitto, ServerCertificate, Store]]:
    """A Mosquitto with a TLS listener (the loopback CA) and an agent's buffer."""
    certificate = loopback_certificate(tmp_path / "tls")
    with (
        Mosquitto(tmp_path / "broker", tls=certificate) as broker,
        Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store,
    ):
        yield broker, certificate, store


def tls_uplink(
    store: Store, broker: Mosquitto, certificate: ServerCertificate, **settings: object
) -> tuple[MqttUplink, Batcher]:
    """The agent's MQTT uplink to the broker's TLS listener (with `settings` for [uplink]) and a batcher
    that seals into the same store."""
    sealed = asyncio.Event()
    mqtt = {"host": "127.0.0.1", "port": broker.tls_port, "tls": True, "ca_file": certificate.ca_file}
    config = UplinkConfig.model_validate({"mqtt": mqtt, "ack_timeout_s": 5, **settings})
    uplink = MqttUplink(store, config, gateway_id="gw-test", sealed=sealed)
    return uplink, batcher_for(store, "gw-test", sealed)


def test_keepalive_stays_inside_the_nat_timeout() -> None:
    assert keepalive_for(300) == 270
    assert keepalive_for(30) == 27
    assert keepalive_for(0.5) == 1
    assert mqtt_keepalive_for(300) == 1080  # TCP probes hold the NAT; MQTT only for the broker
    assert mqtt_keepalive_for(100_000) == 65_535


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_KEEPIDLE/INTVL/CNT are Linux's")
def test_tcp_keepalive_probes_come_before_the_nat_timeout() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname()) as sock,
    ):
        assert hold_nat_open(sock, 300)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 270
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 27
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3


def test_an_idle_link_closes_reconnects_resumed_and_every_byte_is_counted(tmp_path: Path) -> None:
    """Two batches with a pause longer than the NAT timeout between them: the uplink counts the TCP bytes
    and segments of both connections, closes the idle link, and the second connect resumes TLS."""
    certificate = loopback_certificate(tmp_path / "tls")
    with (
        Mosquitto(tmp_path / "broker", tls=certificate) as broker,
        Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store,
    ):
        sealed = asyncio.Event()
        config = UplinkConfig.model_validate(
            {
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker.tls_port,
                    "tls": True,
                    "ca_file": certificate.ca_file,
                },
                "nat_timeout_s": 0.5,
                "ack_timeout_s": 5,
            }
        )
        uplink = MqttUplink(store, config, gateway_id="gw-test", sealed=sealed)
        batcher = batcher_for(store, "gw-test", sealed)

        async def scenario() -> list[int]:
            task = asyncio.create_task(uplink.run())
            sealed_blobs = record_seals(store)
            for n in range(2):
                store.submit([Reading("s1", "t", T0 + n * 1000 + i, float(i), "Cel") for i in range(50)])
                await batcher.seal_due()
                async with asyncio.timeout(10):
                    while store.undelivered(limit=10) or uplink.state == "connected":
                        await asyncio.sleep(0.05)  # delivered, then idle for the NAT timeout: closed
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return [len(blob) for blob in sealed_blobs]

        blobs = asyncio.run(scenario())
    stats = uplink.statistics()
    assert stats.connects == 2 and stats.idle_disconnects == 2
    traffic = stats.traffic
    assert traffic is not None
    assert traffic.app_bytes_sent == sum(blobs)
    assert traffic.today_readings == 100
    # TCP carries the batches plus TLS records, MQTT framing and two handshakes
    assert traffic.tcp_bytes_sent > sum(blobs) + 2 * 300
    assert traffic.tcp_bytes_received > 2 * 100  # at least the server's handshake messages
    assert traffic.tcp_segments_out > 4 and traffic.tcp_segments_in > 4
    assert traffic.today_bytes_on_air > traffic.tcp_bytes_sent + traffic.tcp_bytes_received
    assert traffic.today_bytes_per_reading is not None and traffic.today_bytes_per_reading > 1
    assert traffic.tls_resumed == 1


class ResettingRelay:
    """A TCP relay in front of the broker that can drop its connections with a reset, as an LTE loss does."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._server = server
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()  # an RST to both sides
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, b_writer]
        with contextlib.suppress(OSError, ExceptionGroup):
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump(reader, b_writer))
                tasks.create_task(self._pump(b_reader, writer))

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


def test_after_a_cut_the_link_stays_down_until_a_batch_is_due_then_resumes_tls(tmp_path: Path) -> None:
    """An LTE drop right after a batch: the on-demand uplink does not reconnect (and pay a TLS handshake)
    while nothing waits, however short its backoff; the next sealed batch opens a resumed connection."""
    with tls_broker_and_store(tmp_path) as (broker, certificate, store):
        sealed = asyncio.Event()
        batcher = batcher_for(store, "gw-cut", sealed)

        async def scenario() -> tuple[MqttUplink, list[int]]:
            relay = ResettingRelay(broker.tls_port or 0)
            mqtt = {
                "host": "127.0.0.1",
                "port": await relay.start(),
                "tls": True,
                "ca_file": certificate.ca_file,
            }
            config = UplinkConfig.model_validate({"mqtt": mqtt, "nat_timeout_s": 30, "ack_timeout_s": 5})
            uplink = MqttUplink(store, config, gateway_id="gw-cut", sealed=sealed)
            supervised = Supervised("uplink", uplink.run, Backoff(initial_s=0.05, cap_s=0.1))
            task = asyncio.create_task(supervised.run())
            accepted = []
            for n in range(2):
                store.submit([Reading("s1", "t", T0 + n * 1000 + i, float(i), "Cel") for i in range(50)])
                await batcher.seal_due()
                async with asyncio.timeout(10):
                    while store.undelivered(limit=10):
                        await asyncio.sleep(0.05)
                relay.cut()
                await asyncio.sleep(1.5)  # 15 backoffs or more: time enough to reconnect if it would
                accepted.append(relay.accepted)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await relay.close()
            return uplink, accepted

        uplink, accepted = asyncio.run(scenario())
    assert accepted == [1, 2]  # one connection per batch, none after either cut
    stats = uplink.statistics()
    assert stats.connects == 2 and stats.batches_acked == 2 and stats.state == "idle"
    assert stats.traffic is not None and stats.traffic.tls_resumed == 1


def test_closing_pays_when_the_next_seal_is_further_than_a_reconnect_in_keepalives() -> None:
    """At NAT 300 s (probes every 270 s, 104 bytes each) a resumed reconnect (1,817 bytes) is worth 17
    probe exchanges, a full one (2,848) 27."""
    assert not closing_pays(4_500, 270, resumed=True)  # 16 probes: 1,664 bytes
    assert closing_pays(4_900, 270, resumed=True)  # 18 probes: 1,872
    assert not closing_pays(4_900, 270, resumed=False)
    assert closing_pays(7_600, 270, resumed=False)  # 28 probes: 2,912


def test_the_link_closes_after_the_puback_when_a_resumed_reconnect_is_cheaper(tmp_path: Path) -> None:
    """NAT 300 s. The next seal 6,000 s away: 22 probe exchanges (2,288 bytes) cost more than resuming
    the TLS session then (1,817), so the link closes right after the PUBACK instead of idling 300 s.
    7,400 s away the broker's ticket (7,200 s) will have expired and a full connect (2,848) costs more
    than 27 exchanges (2,808): the link stays up."""
    with tls_broker_and_store(tmp_path) as (broker, certificate, store):
        sealed = asyncio.Event()
        batcher = batcher_for(store, "gw-quiet", sealed)
        mqtt = {"host": "127.0.0.1", "port": broker.tls_port, "tls": True, "ca_file": certificate.ca_file}
        config = UplinkConfig.model_validate({"mqtt": mqtt, "nat_timeout_s": 300, "ack_timeout_s": 5})

        async def after_one_batch(quiet_s: float, n: int) -> tuple[str, int]:
            uplink = MqttUplink(store, config, gateway_id="gw-quiet", sealed=sealed)
            uplink.quiet_for = lambda: quiet_s
            task = asyncio.create_task(uplink.run())
            store.submit([Reading("s1", "t", T0 + n * 1000 + i, float(i), "Cel") for i in range(50)])
            await batcher.seal_due()
            async with asyncio.timeout(10):
                while store.undelivered(limit=10):
                    await asyncio.sleep(0.05)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):  # far less than the 300 s it would idle
                    while uplink.state != "idle":
                        await asyncio.sleep(0.05)
            state = uplink.state
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return state, uplink.statistics().idle_disconnects

        async def scenario() -> list[tuple[str, int]]:
            return [await after_one_batch(6_000, 0), await after_one_batch(7_400, 1)]

        assert asyncio.run(scenario()) == [("idle", 1), ("connected", 0)]


#: TLS 1.3 record around each MQTT packet: header (5), inner content type (1), AEAD tag (16)
TLS_RECORD = 5 + 1 + 16
#: an aliased QoS-1 PUBLISH: fixed header (1 + 2 length bytes for a 128 B-16 KB body), empty topic
#: (2), packet id (2), properties (1 + topic alias 3)
PUBLISH_ALIASED = 11
#: MQTT 5 PUBACK for a success: fixed header (2) and packet id (2), no reason code
PUBACK = 4


def test_a_steady_batch_cycle_is_the_batch_one_tls_record_each_way_and_nothing_else(tmp_path: Path) -> None:
    """docs/lte.md's accounting of one batch cycle on a link that stays up: the PUBLISH of each batch
    is its signed bytes + 33 in one TLS record, the broker answers with one 26-byte PUBACK record, and
    nothing else crosses (no PINGREQ, no second record per PUBLISH, no other packet): each extra
    record would cost 22 bytes + a segment's 52 on the air in every cycle."""
    certificate = loopback_certificate(tmp_path / "tls")
    with (
        Mosquitto(tmp_path / "broker", tls=certificate) as broker,
        Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store,
    ):
        uplink, batcher = tls_uplink(store, broker, certificate, connect_on_demand=False)

        async def scenario() -> tuple[list[int], list[tuple[int, int]]]:
            # a subscriber, as the receiver is: without one Mosquitto's PUBACK carries reason code
            # 0x10 "no matching subscribers", one byte more
            async with aiomqtt.Client("127.0.0.1", broker.port) as receiver:
                await receiver.subscribe("gateways/+/batches", qos=1)
                return await steady_cycles()

        async def steady_cycles() -> tuple[list[int], list[tuple[int, int]]]:
            task = asyncio.create_task(uplink.run())
            sealed_blobs, counted = record_seals(store), []
            for n in range(4):
                store.submit([Reading("s1", "t", T0 + n * 1000 + i, float(i % 7), "Cel") for i in range(300)])
                await batcher.seal_due()
                async with asyncio.timeout(10):
                    while store.undelivered(limit=10):
                        await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)  # the ACKs settle (and after the first, the session tickets)
                traffic = uplink.statistics().traffic
                assert traffic is not None
                counted.append((traffic.tcp_bytes_sent, traffic.tcp_bytes_received))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return [len(blob) for blob in sealed_blobs], counted

        blobs, counted = asyncio.run(scenario())
    assert len(blobs) == 4 and all(128 < size < 16_000 for size in blobs)
    # from the second batch on (the first also carries the handshake, CONNECT and the topic)
    sent = [after[0] - before[0] for before, after in itertools.pairwise(counted)]
    received = [after[1] - before[1] for before, after in itertools.pairwise(counted)]
    assert sent == [size + PUBLISH_ALIASED + TLS_RECORD for size in blobs[1:]]
    assert received == [PUBACK + TLS_RECORD] * 3
