"""The transport-independent half of an uplink: which outbox batches go next, what became of them."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Literal

import structlog

from buffer import OutboxEntry, Store
from gateway.uplink.traffic import Traffic, TrafficStatistics
from kernel.wallclock import now_ms

log = structlog.get_logger(__name__)

#: "idle": closed on purpose while nothing is due (uplink.connect_on_demand), not a failure
UplinkState = Literal["connecting", "connected", "disconnected", "idle"]


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
    #: bytes and segments on the uplink, per day and per reading (docs/lte.md)
    traffic: TrafficStatistics | None = None
    #: deliberate disconnects of an idle link (connect on demand)
    idle_disconnects: int = 0


class Delivery:
    """Hands the oldest outbox batches to a transport and settles them with what it reports."""

    def __init__(
        self, store: Store, *, sealed: asyncio.Event, max_inflight: int, clock: Callable[[], int] = now_ms
    ) -> None:
        self._store = store
        self.clock = clock
        self.traffic = Traffic()
        self.idle_disconnects = 0
        self._sealed = sealed
        self._max_inflight = max_inflight
        #: set after every acknowledged batch (waiters clear it themselves)
        self.delivered = asyncio.Event()
        self.connects = 0
        self._acked = 0
        self._rejected = 0
        self._readings = 0
        self._last_seq: int | None = None
        self._last_epoch: bytes | None = None

    async def send_forever(
        self,
        send: Callable[[OutboxEntry], Coroutine[None, None, None]],
        *,
        timeout_s: float | None = None,
        idle_s: float | None = None,
        may_idle: Callable[[], bool] = lambda: True,
        close_at_once: Callable[[], bool] = lambda: False,
    ) -> None:
        """Up to max_inflight batches at a time through `send`, oldest first; waits for sealed ones.

        Returns only after `idle_s` without anything to send while `may_idle()`, or as soon as
        nothing is left while `close_at_once()` (connect on demand).
        """
        while True:
            self._sealed.clear()
            entries = await asyncio.to_thread(self._store.undelivered, limit=self._max_inflight)
            if not entries:
                if idle_s is not None and close_at_once():
                    self.idle_disconnects += 1
                    return
                if await self._sealed_within(idle_s) or not may_idle():
                    continue
                self.idle_disconnects += 1
                return
            async with asyncio.timeout(timeout_s), asyncio.TaskGroup() as tasks:
                for entry in entries:  # tasks start in creation order: batches leave in seq order
                    tasks.create_task(send(entry))

    async def _sealed_within(self, timeout_s: float | None) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._sealed.wait()
                return True
        return False

    async def work(self) -> None:
        """Return once the outbox holds a batch (a link with nothing to send stays down)."""
        while True:
            self._sealed.clear()
            if await asyncio.to_thread(self._store.undelivered, limit=1):
                return
            await self._sealed.wait()

    async def acknowledged(self, entry: OutboxEntry, *, received: int = 0) -> None:
        """The backend (or the broker) has batch `entry`: delete it from the outbox."""
        self.traffic.application(
            self.clock(), sent=len(entry.blob), received=received, readings=entry.readings
        )
        await asyncio.to_thread(self._store.mark_delivered, entry.seq, entry.epoch or None)
        self._acked += 1
        self._readings += entry.readings
        # batches in flight are acknowledged in any order: the status shows the newest of this epoch
        if self._last_seq is None or entry.epoch != self._last_epoch or entry.seq > self._last_seq:
            self._last_seq, self._last_epoch = entry.seq, entry.epoch
        self.delivered.set()
        log.info("batch delivered", seq=entry.seq, readings=entry.readings)

    async def refused(self, entry: OutboxEntry, why: str) -> None:
        """The backend refuses batch `entry` for good: the outbox gives it up as gap records."""
        await asyncio.to_thread(self._store.reject_batch, entry.seq, entry.epoch or None)
        self._rejected += 1
        log.error("batch refused by the backend, dropped as gaps", seq=entry.seq, why=why)

    def statistics(self, state: UplinkState, *, tls_resumed: int = 0) -> UplinkStatistics:
        return UplinkStatistics(
            state,
            self.connects,
            self._acked,
            self._readings,
            self._last_seq,
            self._rejected,
            self.traffic.statistics(self.clock(), tls_resumed=tls_resumed),
            self.idle_disconnects,
        )


class Uplink(abc.ABC):
    """A transport to the backend (MQTT or HTTPS): what the agent needs of it, and what both share."""

    state: UplinkState
    _delivery: Delivery
    #: seconds until the batcher's next seal (None: nothing waits); the agent sets it
    quiet_for: Callable[[], float | None] = staticmethod(lambda: None)

    _on_demand: bool

    async def run(self) -> None:
        """Send the outbox until the link fails with UplinkError (the supervisor retries); on demand,
        connect only while there is something to send."""
        while True:
            if self._on_demand:
                self.state = "idle"
                await self._delivery.work()
            await self._session()

    @abc.abstractmethod
    async def _session(self) -> None:
        """One connection: until it fails (UplinkError) or, on demand, stays idle."""

    @property
    def traffic(self) -> Traffic:
        """The uplink's byte counters (the agent stores their per-day totals)."""
        return self._delivery.traffic

    @property
    def delivered(self) -> asyncio.Event:
        """Set after every acknowledged batch (waiters clear it themselves)."""
        return self._delivery.delivered

    def statistics(self) -> UplinkStatistics:
        """Counters for status and metrics."""
        return self._delivery.statistics(self.state)
