"""The transport-independent half of an uplink: which outbox batches go next, what became of them."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Literal, NoReturn

import structlog

from buffer import OutboxEntry, Store

log = structlog.get_logger(__name__)

UplinkState = Literal["connecting", "connected", "disconnected"]


@dataclass(frozen=True)
class UplinkStatistics:
    """What the uplink did so far."""

    state: UplinkState
    connects: int
    batches_acked: int
    readings_acked: int
    last_acked_seq: int | None
    #: batches the backend refused for good and the outbox gave up as gaps (HTTPS only)
    batches_rejected: int = 0


class Delivery:
    """Hands the oldest outbox batches to a transport and settles them with what it reports."""

    def __init__(self, store: Store, *, sealed: asyncio.Event, max_inflight: int) -> None:
        self._store = store
        self._sealed = sealed
        self._max_inflight = max_inflight
        #: set after every acknowledged batch (waiters clear it themselves)
        self.delivered = asyncio.Event()
        self.connects = 0
        self._acked = 0
        self._rejected = 0
        self._readings = 0
        self._last_seq: int | None = None

    async def send_forever(
        self, send: Callable[[OutboxEntry], Coroutine[None, None, None]], *, timeout_s: float | None = None
    ) -> NoReturn:
        """Up to max_inflight batches at a time through `send`, oldest first; waits for sealed ones."""
        while True:
            self._sealed.clear()
            entries = await asyncio.to_thread(self._store.undelivered, limit=self._max_inflight)
            if not entries:
                await self._sealed.wait()
                continue
            async with asyncio.timeout(timeout_s), asyncio.TaskGroup() as tasks:
                for entry in entries:  # tasks start in creation order: batches leave in seq order
                    tasks.create_task(send(entry))

    async def acknowledged(self, entry: OutboxEntry) -> None:
        """The backend (or the broker) has batch `entry`: delete it from the outbox."""
        await asyncio.to_thread(self._store.mark_delivered, entry.seq, entry.epoch or None)
        self._acked += 1
        self._readings += entry.readings
        self._last_seq = entry.seq
        self.delivered.set()
        log.info("batch delivered", seq=entry.seq, readings=entry.readings)

    async def refused(self, entry: OutboxEntry, why: str) -> None:
        """The backend refuses batch `entry` for good: the outbox gives it up as gap records."""
        await asyncio.to_thread(self._store.reject_batch, entry.seq, entry.epoch or None)
        self._rejected += 1
        log.error("batch refused by the backend, dropped as gaps", seq=entry.seq, why=why)

    def statistics(self, state: UplinkState) -> UplinkStatistics:
        return UplinkStatistics(
            state, self.connects, self._acked, self._readings, self._last_seq, self._rejected
        )


class Uplink(abc.ABC):
    """A transport to the backend (MQTT or HTTPS): what the agent needs of it, and what both share."""

    state: UplinkState
    _delivery: Delivery

    @abc.abstractmethod
    async def run(self) -> None:
        """Send the outbox until the link fails with UplinkError (the supervisor retries)."""

    @property
    def delivered(self) -> asyncio.Event:
        """Set after every acknowledged batch (waiters clear it themselves)."""
        return self._delivery.delivered

    def statistics(self) -> UplinkStatistics:
        """Counters for status and metrics."""
        return self._delivery.statistics(self.state)
