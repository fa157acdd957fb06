"""A transport we own for fast tests of delivery: the real Delivery and outbox, no broker, no network."""

from __future__ import annotations

import asyncio

from buffer import OutboxEntry, Store
from gateway.uplink.delivery import Delivery, Uplink
from kernel.errors import UplinkError


class LoopbackUplink(Uplink):
    """Acknowledges every batch it is handed, as a broker's PUBACK would; `fail_once` seqs fail the link."""

    def __init__(self, store: Store, *, sealed: asyncio.Event, journal: list[str] | None = None) -> None:
        self._delivery = Delivery(store, sealed=sealed, max_inflight=4)
        self._on_demand = False
        self.state = "disconnected"
        self.sent: list[OutboxEntry] = []
        self.fail_once: set[int] = set()
        self.journal = journal if journal is not None else []

    async def _session(self) -> None:
        self.state = "connected"
        try:
            await self._delivery.send_forever(self._send)
        except asyncio.CancelledError:
            self.journal.append("uplink stopped")
            raise
        finally:
            self.state = "disconnected"

    async def _send(self, entry: OutboxEntry) -> None:
        if entry.seq in self.fail_once:
            self.fail_once.discard(entry.seq)
            raise UplinkError(f"link lost while sending batch {entry.seq}")
        self.sent.append(entry)
        self.journal.append(f"sent {entry.seq}")
        await self._delivery.acknowledged(entry)
