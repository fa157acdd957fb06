"""Simulated gateways that sign batches the way the agent does: for receiver tests and the benchmark."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import wire

#: 2026-01-01T00:00:00Z, the simulated fleet's first reading
T0_MS = 1_767_225_600_000


@dataclass
class SimulatedGateway:
    """One gateway: its key, a random epoch and the next seq; `batch` signs the next batch."""

    gateway_id: str
    series: int = 1
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    epoch: bytes = field(default_factory=lambda: os.urandom(wire.EPOCH_LENGTH))
    seq: int = 0

    @property
    def kid(self) -> bytes:
        """The current key's id."""
        return wire.kid_for(self.key.public_key())

    @property
    def public_raw(self) -> bytes:
        """The current public key's 32 raw bytes."""
        return self.key.public_key().public_bytes_raw()

    def batch(
        self, per_series: int = 5, *, offset: float = 0.0, seq: int | None = None, refer: bool = False
    ) -> bytes:
        """Sign the next batch (or the batch `seq` again, with values shifted by `offset`); with
        `refer` it names its series catalogue instead of carrying the table."""
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        return wire.sign(self.body(seq, per_series, offset=offset, refer=refer), self.key, self.kid)

    def body(
        self,
        seq: int,
        per_series: int,
        *,
        offset: float = 0.0,
        rollover: wire.KeyRollover | None = None,
        refer: bool = False,
    ) -> bytes:
        """The encoded body of batch `seq`: `per_series` readings, one a second, of each series."""
        n = self.series * per_series
        start = T0_MS + seq * per_series * 1000
        readings = wire.ReadingColumns(
            series=np.repeat(np.arange(self.series, dtype=np.int32), per_series),
            ts_ms=np.tile(np.arange(per_series, dtype=np.int64) * 1000 + start, self.series),
            value=np.round(np.sin(np.arange(n) / 7.0) * 10 + 15 + offset, 1),
            quality=np.zeros(n, dtype=np.uint16),
        )
        names = [
            wire.SeriesInfo(f"sensor-{i}", "air_temperature", "Cel", resolution=0.1)
            for i in range(self.series)
        ]
        return wire.encode_batch(
            gateway_id=self.gateway_id, seq=seq, created_ms=start + per_series * 1000, series=names,
            readings=readings, epoch=self.epoch, rollover=rollover, refer_to_catalogue=refer,
        )  # fmt: skip

    def rotate(self, per_series: int = 5) -> bytes:
        """Move to a new key: the next batch, signed by the OLD key, carries the rollover statement."""
        new_key = Ed25519PrivateKey.generate()
        seq, self.seq = self.seq, self.seq + 1
        statement = wire.make_rollover(self.gateway_id, self.kid, new_key)
        blob = wire.sign(self.body(seq, per_series, rollover=statement), self.key, self.kid)
        self.key = new_key
        return blob


#: seeds of two Ed25519 keys whose kids share their first 4 bytes (d0175a60), the hint a compact
#: envelope names a key by: found by a birthday search over the seeds 0..170,398 (6 s), kept here so
#: tests of the registries' refusal need not search
SHARED_HINT_SEEDS = (34_433, 170_398)


def keys_sharing_a_hint() -> tuple[Ed25519PrivateKey, Ed25519PrivateKey]:
    """Two private keys whose kids differ but start with the same 4 bytes."""
    first, second = (Ed25519PrivateKey.from_private_bytes(s.to_bytes(32, "big")) for s in SHARED_HINT_SEEDS)
    return first, second


def topic_of(gateway_id: str) -> str:
    """The topic a gateway publishes its batches to."""
    return f"gateways/{gateway_id}/batches"


async def publish_all(
    port: int,
    messages: Iterable[tuple[str, bytes]],
    *,
    client_id: str = "fleet",
    window: int = 100,
    tls: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
) -> int:
    """Publish QoS 1 messages, `window` awaiting their PUBACK at a time; returns how many."""
    sent = 0
    username, password = credentials if credentials is not None else (None, None)
    client = aiomqtt.Client(
        "127.0.0.1", port, identifier=client_id, max_inflight_messages=window, tls_context=tls,
        username=username, password=password,
    )  # fmt: skip
    async with (
        client,
        asyncio.TaskGroup() as tasks,
    ):
        slots = asyncio.Semaphore(window)

        async def one(topic: str, blob: bytes) -> None:
            try:
                await client.publish(topic, blob, qos=1)
            finally:
                slots.release()

        for topic, blob in messages:
            await slots.acquire()
            tasks.create_task(one(topic, blob))
            sent += 1
    return sent


def write_public_keys(directory: Path, gateways: Iterable[SimulatedGateway]) -> Path:
    """`<gateway id>.pem` for each gateway: a receiver's --keys directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for gw in gateways:
        pem = gw.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        (directory / f"{gw.gateway_id}.pem").write_bytes(pem)
    return directory
