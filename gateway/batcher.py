"""Cuts committed readings into signed batches and seals them into the outbox (signed once, immutable)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import PendingSlice, Store
from gateway import wire

log = structlog.get_logger(__name__)

#: (sensor, quantity, unit) -> how that series is declared on the wire
SeriesDeclaration = Callable[[str, str, str], wire.SeriesInfo]


@dataclass(frozen=True)
class BatcherStatistics:
    """Counters of the batcher."""

    batches_sealed: int
    readings_sealed: int
    last_seq: int | None


def now_ms() -> int:
    """Wall-clock UTC milliseconds."""
    return time.time_ns() // 1_000_000


class Batcher:
    """Every closed time slice: committed readings -> encode -> sign -> one outbox row."""

    def __init__(
        self,
        store: Store,
        *,
        gateway_id: str,
        private_key: Ed25519PrivateKey,
        kid: bytes,
        declare: SeriesDeclaration,
        slice_s: float,
        max_readings: int,
        sealed: asyncio.Event,
    ) -> None:
        self._store = store
        self._gateway_id = gateway_id
        self._key = private_key
        self._kid = kid
        self._declare = declare
        self._slice_ms = max(1, int(slice_s * 1000))
        self._max_readings = max_readings
        self._sealed = sealed
        self._batches = 0
        self._readings = 0
        self._last_seq: int | None = None

    async def run(self) -> None:
        """Seal each time slice shortly after it closes, forever."""
        while True:
            wait_ms = self._slice_ms - now_ms() % self._slice_ms
            await asyncio.sleep(wait_ms / 1000)
            await self.seal(upto_ts_ms=now_ms() // self._slice_ms * self._slice_ms)

    async def seal(self, *, upto_ts_ms: int | None) -> int:
        """Seal every committed, unbatched reading older than `upto_ts_ms` (None: all); returns batches made."""
        made = 0
        while True:
            pending = await asyncio.to_thread(
                self._store.pending, upto_ts_ms=upto_ts_ms, limit=self._max_readings
            )
            if pending is None:
                return made
            await asyncio.to_thread(self._seal_one, pending)
            made += 1
            self._sealed.set()

    def _seal_one(self, pending: PendingSlice) -> None:
        """Encode, sign and store one batch (runs in a worker thread: CPU and disk)."""
        seq = self._store.next_seq()
        blob = wire.sign(self.encode(seq, pending), self._key, self._kid)
        self._store.seal_batch(seq, blob, pending)
        self._batches += 1
        self._readings += len(pending.ts_ms)
        self._last_seq = seq
        log.info(
            "batch sealed", seq=seq, readings=len(pending.ts_ms), bytes=len(blob), gaps=len(pending.gaps)
        )

    def encode(self, seq: int, pending: PendingSlice) -> bytes:
        """The compressed CBOR body of one batch."""
        keys = list(pending.series_keys)
        index = {key: i for i, key in enumerate(keys)}
        gaps = []
        for gap in pending.gaps:
            key = (gap.sensor, gap.quantity, gap.unit)
            if key not in index:
                index[key] = len(keys)
                keys.append(key)
            gaps.append(wire.Gap(index[key], gap.from_ms, gap.to_ms, gap.count, gap.reason))
        events = [wire.Event(e.ts_ms, e.source, e.kind, e.detail) for e in pending.events]
        readings = wire.ReadingColumns(
            series=np.asarray(pending.series, dtype=np.int32),
            ts_ms=np.asarray(pending.ts_ms, dtype=np.int64),
            value=np.asarray(pending.value, dtype=np.float64),
            quality=np.asarray(pending.quality, dtype=np.uint16),
        )
        return wire.encode_batch(
            gateway_id=self._gateway_id,
            seq=seq,
            created_ms=now_ms(),
            series=[self._declare(*key) for key in keys],
            readings=readings,
            gaps=gaps,
            events=events,
        )

    def statistics(self) -> BatcherStatistics:
        """Counters for status and metrics."""
        return BatcherStatistics(self._batches, self._readings, self._last_seq)
