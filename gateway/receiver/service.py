"""The receiver process: subscribe to every gateway's batches, verify, deduplicate, store."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import structlog

from gateway import wire
from gateway.backoff import Backoff
from gateway.errors import StorageError, UnknownKey, UplinkError, WireError
from gateway.receiver.storage import Outcome, ReceiverDatabase

log = structlog.get_logger(__name__)

#: a gateway whose key is unknown may have been added since: reload the key directory at most this often
KEY_RELOAD_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Rejection:
    """Why a batch was not stored: the wire error's class name, "topic_mismatch" or "malformed"."""

    reason: str
    detail: str


@dataclass(frozen=True)
class ReceiverStatistics:
    """Counters the demo and operators read."""

    verified: int
    rejected: int
    rejected_by_reason: dict[str, int]
    duplicates_dropped: int
    readings_stored: int
    #: window rows received in stored batches (a revision counts again; the database keeps the latest)
    windows_stored: int
    batches_stored: int
    #: subscribed at the MQTT broker
    connected: bool
    #: the HTTPS endpoint accepts batches
    listening: bool


class Receiver:
    """Verifies batches with the gateways' registered public keys and stores each reading exactly once."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        keys_dir: Path,
        database: ReceiverDatabase,
        topic: str = "gateways/+/batches",
        client_id: str = "gateway-receiver",
    ) -> None:
        self._host, self._port = host, port
        self._keys_dir = keys_dir
        self._keyring = wire.Keyring.load_dir(keys_dir)
        self._keys_loaded = time.monotonic()
        self._db = database
        self._topic = topic
        self._client_id = client_id
        self._verified = 0
        self._rejected: Counter[str] = Counter()
        self._duplicates = 0
        self._readings = 0
        self._windows = 0
        self._batches = 0
        self._connected = False
        #: set by the HTTPS endpoint while it accepts batches
        self.listening = False
        self._lock = threading.Lock()

    async def run(self) -> None:
        """Receive forever, reconnecting with backoff; a persistent session keeps what arrives meanwhile."""
        backoff = Backoff(initial_s=0.2, cap_s=10.0)
        warned = False
        while True:
            try:
                await self._session()
            except (aiomqtt.MqttError, UplinkError) as exc:
                self._connected = False
                delay = backoff.next_delay()
                if not warned:
                    log.warning("broker unreachable", error=str(exc), retry_in_s=round(delay, 2))
                    warned = True
                await asyncio.sleep(delay)
            else:
                return
            if self._connected:
                backoff.reset()

    async def _session(self) -> None:
        client = aiomqtt.Client(
            self._host, self._port, identifier=self._client_id, clean_session=False, keepalive=30
        )
        async with client:
            await client.subscribe(self._topic, qos=1)
            self._connected = True  # only now: "connected" promises the subscription exists
            log.info("receiver connected", host=self._host, port=self._port, topic=self._topic)
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, bytes | bytearray):
                    await asyncio.to_thread(self.handle, str(message.topic), bytes(payload))
                else:
                    self._reject("malformed", str(message.topic), "payload is not bytes")

    def handle(self, topic: str, blob: bytes) -> Outcome | None:
        """Verify, decode and store one message; returns what happened (None when rejected)."""
        verdict = self.receive(topic, blob)
        return None if isinstance(verdict, Rejection) else verdict

    def receive(self, topic: str, blob: bytes) -> Outcome | Rejection:
        """Verify, decode and store one batch that arrived on `topic` (an MQTT topic or an HTTP path of
        the form gateways/<id>/batches); a replay is counted as rejected and returned as Outcome.REPLAY.

        Thread-safe: concurrent HTTPS requests and MQTT messages take turns (one database connection).
        """
        with self._lock:
            return self._receive(topic, blob)

    def _receive(self, topic: str, blob: bytes) -> Outcome | Rejection:
        try:
            batch = self._verify(blob)
        except WireError as exc:
            return self._reject(type(exc).__name__, topic, str(exc))
        parts = topic.split("/")
        if len(parts) == 3 and parts[1] != batch.gateway_id:
            return self._reject("topic_mismatch", topic, f"body says gateway {batch.gateway_id}")
        self._verified += 1
        try:
            outcome = self._db.store(batch, blob)
        except StorageError as exc:
            log.error("cannot store batch", gateway_id=batch.gateway_id, seq=batch.seq, error=str(exc))
            raise
        if outcome is Outcome.STORED:
            self._batches += 1
            self._readings += len(batch.readings)
            self._windows += len(batch.windows)
            log.info(
                "batch stored",
                gateway_id=batch.gateway_id,
                seq=batch.seq,
                readings=len(batch.readings),
                windows=len(batch.windows),
            )
        elif outcome is Outcome.DUPLICATE:
            self._duplicates += 1
            log.info("duplicate batch dropped", gateway_id=batch.gateway_id, seq=batch.seq)
        else:
            self._reject("replay", topic, f"seq {batch.seq} already stored with other content")
        return outcome

    def _verify(self, blob: bytes) -> wire.Batch:
        try:
            return wire.verify_and_decode(blob, self._keyring)
        except UnknownKey:
            if time.monotonic() - self._keys_loaded < KEY_RELOAD_INTERVAL_S:
                raise
            self._keyring = wire.Keyring.load_dir(self._keys_dir)
            self._keys_loaded = time.monotonic()
            return wire.verify_and_decode(blob, self._keyring)

    def _reject(self, reason: str, topic: str, detail: str) -> Rejection:
        self._rejected[reason] += 1
        log.warning("batch rejected", reason=reason, topic=topic, detail=detail)
        return Rejection(reason, detail)

    def statistics(self) -> ReceiverStatistics:
        """Counters so far."""
        return ReceiverStatistics(
            verified=self._verified,
            rejected=sum(self._rejected.values()),
            rejected_by_reason=dict(self._rejected),
            duplicates_dropped=self._duplicates,
            readings_stored=self._readings,
            windows_stored=self._windows,
            batches_stored=self._batches,
            connected=self._connected,
            listening=self.listening,
        )

    async def write_statistics(self, path: Path, every_s: float = 0.5) -> None:
        """Rewrite a JSON statistics file atomically, forever (the demo and tests read it)."""
        while True:
            write_json_atomically(path, self.statistics().__dict__)
            await asyncio.sleep(every_s)


def write_json_atomically(path: Path, value: object) -> None:
    """Write JSON to `path` via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
