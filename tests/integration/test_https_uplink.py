"""The HTTPS uplink against the reference receiver's endpoint over real TLS on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from conftest import Processes, read_json, wait_until
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_skeleton_path import start_station, station_total, status, stored_rows, write_config

from buffer import Store
from gateway import tomlwriter, wire
from gateway.config import UplinkConfig
from gateway.receiver import BatchEndpoint, Committer, ReceiverCore, RegisteredKey, SqliteStore
from gateway.uplink.https import HttpsUplink
from hil.broker import free_port
from hil.fleet import SimulatedGateway
from hil.tls import ServerCertificate, loopback_certificate
from kernel.errors import UplinkError
from kernel.model import Reading
from kernel.wallclock import now_ms

GATEWAY = "gw-1"
T0 = 1_767_225_600_000


def seal(store: Store, key: Ed25519PrivateKey, sensor: str, n: int) -> int:
    """Commit n readings of one sensor and seal them as one batch; its seq."""
    store.submit([Reading(sensor, "pm10", T0 + i * 1000, 10.0 + i, "ug/m3") for i in range(n)])
    store.flush_blocking(timeout=10)
    pending = store.pending(upto_ts_ms=None)
    assert pending is not None
    seq = store.next_seq()
    keys = list(pending.series_keys)  # the readings' series indices; gaps may add more
    for gap in pending.gaps:
        if (gap.sensor, gap.quantity, gap.unit) not in keys:
            keys.append((gap.sensor, gap.quantity, gap.unit))
    body = wire.encode_batch(
        gateway_id=GATEWAY,
        seq=seq,
        created_ms=T0,
        series=[wire.SeriesInfo(s, q, u) for s, q, u in keys],
        readings=wire.ReadingColumns(
            series=pending.series, ts_ms=pending.ts_ms, value=pending.value, quality=pending.quality
        ),
        gaps=[
            wire.Gap(keys.index((g.sensor, g.quantity, g.unit)), g.from_ms, g.to_ms, g.count, g.reason)
            for g in pending.gaps
        ],
        events=[wire.Event(e.ts_ms, e.source, e.kind, e.detail) for e in pending.events],
    )
    store.seal_batch(seq, wire.sign(body, key, wire.kid_for(key.public_key())), pending)
    return seq


def server_tls(cert: ServerCertificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    return context


def uplink_config(port: int, ca_file: Path) -> UplinkConfig:
    url = f"https://127.0.0.1:{port}/gateways/{{gateway_id}}/batches"
    return UplinkConfig(transport="https", https={"url": url, "ca_file": ca_file}, ack_timeout_s=5.0)


class Backend:
    """The reference receiver with its HTTPS endpoint, in this process."""

    def __init__(self, tmp_path: Path) -> None:
        self.database = SqliteStore(tmp_path / "received.db")
        self.receiver = ReceiverCore(self.database)
        self.committer = Committer(self.receiver)
        self.port = free_port()
        self.cert = loopback_certificate(tmp_path / "tls")

    def register(self, key: Ed25519PrivateKey) -> int:
        """Enrol the gateway's key; returns the quarantined batches that released."""
        raw = key.public_key().public_bytes_raw()
        return self.receiver.enrol(
            RegisteredKey(wire.kid_for(key.public_key()), GATEWAY, raw, now_ms(), "cli")
        )


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    running = Backend(tmp_path)
    endpoint = BatchEndpoint(
        running.committer, host="127.0.0.1", port=running.port, clock=now_ms, tls=server_tls(running.cert)
    )
    tasks = [asyncio.create_task(endpoint.run()), asyncio.create_task(running.committer.run())]
    while not endpoint.listening:
        await asyncio.sleep(0.01)
    yield running
    for task in tasks:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    running.database.close()


async def until(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def test_an_unregistered_key_is_held_in_quarantine_and_a_refused_batch_becomes_a_reported_gap(
    tmp_path: Path, backend: Backend
) -> None:
    key = Ed25519PrivateKey.generate()
    store = Store.open(tmp_path / "buffer.db")
    try:
        seal(store, key, "dust-0", 5)
        sealed = asyncio.Event()  # what the batcher sets after sealing
        uplink = HttpsUplink(
            store, uplink_config(backend.port, backend.cert.ca_file), gateway_id=GATEWAY, sealed=sealed
        )
        task = asyncio.create_task(uplink.run())
        # the backend does not know the gateway's key yet: 202, held verbatim in its quarantine
        await until(lambda: not store.undelivered())
        assert backend.database.count_readings() == 0
        assert [q.reason.value for q in backend.database.quarantined()] == ["not_enrolled"]
        assert backend.register(key) == 1  # enrolling the key stores the quarantined batch
        assert backend.database.count_readings(GATEWAY) == 5

        # batch `refused` rotted in the outbox (one flipped signature bit): 422
        refused, _ = seal(store, key, "dust-1", 5), seal(store, key, "dust-2", 5)
        with sqlite3.connect(tmp_path / "buffer.db") as conn:
            (blob,) = conn.execute("SELECT blob FROM outbox WHERE seq = ?", (refused,)).fetchone()
            conn.execute(
                "UPDATE outbox SET blob = ? WHERE seq = ?", (blob[:-1] + bytes([blob[-1] ^ 1]), refused)
            )
        sealed.set()
        await until(lambda: not store.undelivered())
        assert backend.database.count_readings(GATEWAY) == 10  # batches dust-0 and dust-2
        stats = uplink.statistics()
        assert (stats.state, stats.batches_acked, stats.batches_rejected) == ("connected", 2, 1)
        assert store.statistics().dropped == 5

        # the refused readings are a gap, which reaches the backend with the next batch
        seal(store, key, "dust-3", 2)
        sealed.set()
        await until(lambda: not store.undelivered())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        store.close()
    gaps = stored_rows(tmp_path / "received.db", "SELECT sensor, from_ms, to_ms, count, reason FROM gaps")
    assert gaps == [("dust-1", T0, T0 + 4000, 5, "rejected_by_backend")]
    (event,) = stored_rows(tmp_path / "received.db", "SELECT kind, detail FROM events")
    assert event == (
        "buffer.batches_dropped",
        f"seq {refused}..{refused} (5 readings) dropped: rejected_by_backend",
    )
    assert backend.receiver.statistics().by_reason["bad_signature"] == 1


async def test_a_server_the_gateway_does_not_trust_gets_nothing(tmp_path: Path, backend: Backend) -> None:
    key = Ed25519PrivateKey.generate()
    backend.register(key)
    stranger = loopback_certificate(tmp_path / "other-ca")  # a CA the backend's certificate is not from
    store = Store.open(tmp_path / "buffer.db")
    try:
        seal(store, key, "dust-0", 3)
        uplink = HttpsUplink(
            store, uplink_config(backend.port, stranger.ca_file), gateway_id=GATEWAY, sealed=asyncio.Event()
        )
        with pytest.raises(UplinkError, match="CERTIFICATE_VERIFY_FAILED"):
            await uplink.run()
        assert len(store.undelivered()) == 1
    finally:
        store.close()
    assert backend.receiver.statistics().verified == 0


@pytest.mark.slow
def test_agent_backlog_arrives_once_over_https_after_the_backend_was_down(
    tmp_path: Path, processes: Processes
) -> None:
    link = tmp_path / "ttyWEATHER"
    station = start_station(processes, link, rate=10)
    config_file, receiver_keys = write_config(tmp_path, free_port(), link)
    cert = loopback_certificate(tmp_path / "tls")
    port = free_port()
    config = tomllib.loads(config_file.read_text())
    config["uplink"] = {
        "transport": "https",
        "https": {
            "url": f"https://127.0.0.1:{port}/gateways/{{gateway_id}}/batches",
            "ca_file": str(cert.ca_file),
        },
        "ack_timeout_s": 3.0,
    }
    config_file.write_text(tomlwriter.dumps(config))
    agent = processes.start("agent", "-m", "gateway", "run", "--config", str(config_file))

    def backlog() -> bool:
        store = status(tmp_path).get("store") or {}
        assert isinstance(store, dict)
        return int(store.get("outbox_rows", 0)) >= 2

    wait_until(backlog, 30, "batches sealed while the backend is down")
    db, stats_file = tmp_path / "received.db", tmp_path / "receiver.json"
    receiver = processes.start(
        "receiver", "-m", "gateway", "receiver", "--listen", f"127.0.0.1:{port}",
        "--tls-cert", str(cert.cert_file), "--tls-key", str(cert.key_file),
        "--keys", str(receiver_keys), "--db", str(db), "--stats-file", str(stats_file),
    )  # fmt: skip
    wait_until(lambda: read_json(stats_file).get("listening") is True, 30, "the receiver's endpoint")
    time.sleep(1)
    produced = station_total(station)
    wait_until(lambda: read_json(stats_file).get("readings_stored", 0) >= produced, 30, "the backlog")
    uplink = status(tmp_path)["uplink"]
    assert isinstance(uplink, dict) and uplink["state"] == "connected"
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=10) == 0, processes.log("agent")
    receiver.send_signal(signal.SIGTERM)
    assert receiver.wait(timeout=10) == 0, processes.log("receiver")

    received = read_json(stats_file)
    assert (received["rejected"], received["readings_stored"]) == (0, produced)
    assert stored_rows(db, "SELECT count(*) FROM readings")[0][0] == produced
    seqs = [row[0] for row in stored_rows(db, "SELECT seq FROM batches ORDER BY seq")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert '"task.failed"' in processes.log("agent")  # the outage was noticed and retried


@contextmanager
def listening_socket() -> Iterator[int]:
    """A loopback port somebody else is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_receiver_needs_a_source_and_names_a_taken_port(tmp_path: Path) -> None:
    base = [
        sys.executable,
        "-m",
        "gateway",
        "receiver",
        "--keys",
        str(tmp_path),
        "--db",
        str(tmp_path / "r.db"),
    ]
    nothing = subprocess.run(base, check=False, capture_output=True, text=True, timeout=30)
    assert nothing.returncode == 2 and "give --broker, --listen or both" in nothing.stderr
    with listening_socket() as port:
        taken = subprocess.run(
            [*base, "--listen", f"127.0.0.1:{port}"], check=False, capture_output=True, text=True, timeout=30
        )
    assert taken.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr


async def test_the_endpoint_answers_each_case_with_its_status(backend: Backend) -> None:
    key = Ed25519PrivateKey.generate()
    backend.register(key)

    def batch(seq: int, value: float) -> bytes:
        readings = wire.ReadingColumns(
            series=np.zeros(1, np.int32),
            ts_ms=np.full(1, T0),
            value=np.full(1, value),
            quality=np.zeros(1, np.uint16),
        )
        series = [wire.SeriesInfo("dust-0", "pm10", "ug/m3")]
        body = wire.encode_batch(gateway_id=GATEWAY, seq=seq, created_ms=T0, series=series, readings=readings)
        return wire.sign(body, key, wire.kid_for(key.public_key()))

    stranger = SimulatedGateway(GATEWAY).batch()
    tls = ssl.create_default_context(cafile=str(backend.cert.ca_file))
    base = f"https://127.0.0.1:{backend.port}/gateways"
    cases = [
        (f"{base}/{GATEWAY}/batches", batch(1, 1.0), 200, {"outcome": "stored"}),
        (f"{base}/{GATEWAY}/batches", batch(1, 1.0), 200, {"outcome": "duplicate"}),
        (f"{base}/{GATEWAY}/batches", batch(1, 2.0), 409, {"error": "replay"}),
        (f"{base}/gw-other/batches", batch(2, 1.0), 403, {"error": "topic_mismatch"}),
        (f"{base}/{GATEWAY}/batches", b"\xd2garbage", 422, {"error": "malformed"}),
        (f"{base}/gw-2/batches", stranger, 202, {"outcome": "quarantined", "reason": "not_enrolled"}),
        (f"{base}/{GATEWAY}/batches", stranger, 202, {"outcome": "quarantined", "reason": "unknown_key"}),
        (f"{base}/gw-b%2Fx/batches", batch(3, 1.0), 400, {"error": "bad_gateway_id"}),
    ]
    async with aiohttp.ClientSession(headers={"Content-Type": wire.MEDIA_TYPE}) as session:
        for url, body, want_status, want in cases:
            async with session.post(url, data=body, ssl=tls) as response:
                answer = await response.json()
                assert response.status == want_status, (url, answer)
                assert {k: answer[k] for k in want} == want
    assert backend.database.count_readings(GATEWAY) == 1


async def test_an_idle_https_link_closes_and_its_next_connection_resumes_tls(
    tmp_path: Path, backend: Backend
) -> None:
    """Two batches with a pause longer than the NAT timeout: the keep-alive connection is closed in
    between, the second one resumes the TLS session, and the traffic of both is counted."""
    key = Ed25519PrivateKey.generate()
    backend.register(key)
    store = Store.open(tmp_path / "buffer.db")
    try:
        sealed = asyncio.Event()
        config = uplink_config(backend.port, backend.cert.ca_file).model_copy(update={"nat_timeout_s": 0.5})
        uplink = HttpsUplink(store, config, gateway_id=GATEWAY, sealed=sealed)
        task = asyncio.create_task(uplink.run())
        for i in range(2):
            seal(store, key, f"dust-{i}", 20)
            sealed.set()
            await until(lambda: not store.undelivered() and uplink.state == "idle")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stats = uplink.statistics()
    finally:
        store.close()
    assert backend.receiver.statistics().readings_stored == 40
    assert stats.idle_disconnects == 2 and stats.traffic is not None
    assert stats.traffic.tls_resumed == 1
    assert stats.traffic.today_readings == 40
    assert stats.traffic.tcp_bytes_sent > stats.traffic.app_bytes_sent > 0
    assert stats.traffic.tcp_segments_out > 0 and stats.traffic.tcp_segments_in > 0
