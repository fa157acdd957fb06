"""What the MQTT uplink costs on a real TLS Mosquitto: traffic accounting, idle disconnects, TLS resumption."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import sys
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import Store, StoreOptions
from gateway import wire
from gateway.batcher import Batcher
from gateway.config import UplinkConfig
from gateway.sealing import Due, SealingRules
from gateway.uplink.mqtt import MqttUplink
from gateway.uplink.session import hold_nat_open, keepalive_for, mqtt_keepalive_for
from hil.broker import Mosquitto
from hil.tls import ServerCertificate, loopback_certificate
from kernel.model import Reading

KEY = Ed25519PrivateKey.generate()
T0 = 1_780_000_000_000


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


def tls_uplink(
    store: Store, broker: Mosquitto, certificate: ServerCertificate, **settings: object
) -> tuple[MqttUplink, Batcher]:
    """The agent's MQTT uplink to the broker's TLS listener (with `settings` for [uplink]) and a batcher
    that seals into the same store."""
    sealed = asyncio.Event()
    mqtt = {"host": "127.0.0.1", "port": broker.tls_port, "tls": True, "ca_file": certificate.ca_file}
    config = UplinkConfig.model_validate({"mqtt": mqtt, "ack_timeout_s": 5, **settings})
    uplink = MqttUplink(store, config, gateway_id="gw-test", sealed=sealed)
    batcher = Batcher(
        store, gateway_id="gw-test", private_key=KEY, kid=wire.kid_for(KEY.public_key()), declare=wire.SeriesInfo,
        due=Due(SealingRules(max_delay_ms=1000, target_readings=1000)), max_readings=1000, sealed=sealed,
    )  # fmt: skip
    return uplink, batcher


def test_an_idle_link_closes_reconnects_resumed_and_every_byte_is_counted(tmp_path: Path) -> None:
    """Two batches with a pause longer than the NAT timeout between them: the uplink counts the TCP bytes
    and segments of both connections, closes the idle link, and the second connect resumes TLS."""
    certificate = loopback_certificate(tmp_path / "tls")
    with (
        Mosquitto(tmp_path / "broker", tls=certificate) as broker,
        Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store,
    ):
        uplink, batcher = tls_uplink(store, broker, certificate, nat_timeout_s=0.5)

        async def scenario() -> list[int]:
            task = asyncio.create_task(uplink.run())
            blobs = []
            for n in range(2):
                store.submit([Reading("s1", "t", T0 + n * 1000 + i, float(i), "Cel") for i in range(50)])
                await batcher.seal_due()
                blobs += [len(e.blob) for e in store.undelivered(limit=10)]
                async with asyncio.timeout(10):
                    while store.undelivered(limit=10) or uplink.state == "connected":
                        await asyncio.sleep(0.05)  # delivered, then idle for the NAT timeout: closed
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return blobs

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
            blobs, counted = [], []
            for n in range(4):
                store.submit([Reading("s1", "t", T0 + n * 1000 + i, float(i % 7), "Cel") for i in range(300)])
                await batcher.seal_due()
                blobs += [len(e.blob) for e in store.undelivered(limit=10)]
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
            return blobs, counted

        blobs, counted = asyncio.run(scenario())
    assert len(blobs) == 4 and all(128 < size < 16_000 for size in blobs)
    # from the second batch on (the first also carries the handshake, CONNECT and the topic)
    sent = [after[0] - before[0] for before, after in itertools.pairwise(counted)]
    received = [after[1] - before[1] for before, after in itertools.pairwise(counted)]
    assert sent == [size + PUBLISH_ALIASED + TLS_RECORD for size in blobs[1:]]
    assert received == [PUBACK + TLS_RECORD] * 3
