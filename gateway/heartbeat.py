"""The heartbeat: an idle gateway tells the backend it is alive, at a price its data plan can bear.

With `uplink.connect_on_demand` a gateway with nothing to send opens no connection for hours, so the
backend cannot tell it from a dead post. After `uplink.heartbeat_s` without a sealed batch, the
batcher seals one that carries no readings, only an `agent.heartbeat` health event whose detail
(JSON, `Vitals`) says how the agent is: it travels like every batch (signed, durable in the outbox,
acknowledged), and the receiver stores it with the other events. Sans-I/O: the wall clock in,
a deadline and the event out. The default of 6 h costs 4 connects a day: measured 3,530 bytes on the
air each with a full TLS handshake (bench/air_bench.py profile c: 14.1 KB/day; about 2.5 KB resumed),
within profile (c)'s 30 KB/day.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

from kernel.model import HealthEvent

SOURCE = "agent"
KIND = "agent.heartbeat"


@dataclass(frozen=True)
class Vitals:
    """What a heartbeat says (its event's detail, as JSON)."""

    uptime_s: int
    sensors_ok: int
    sensors_stale: int
    #: readings committed and not sealed yet, batches sealed and not acknowledged yet
    backlog_readings: int
    outbox_batches: int
    #: bytes on the uplink (on the air where the kernel counts them, else the agent's own)
    today_bytes: int
    yesterday_bytes: int
    last_30_days_bytes: int


class Heartbeat:
    """When the next heartbeat is due: `period_ms` after the last sealed batch (or the start)."""

    def __init__(self, period_ms: int, vitals: Callable[[], Vitals]) -> None:
        if period_ms <= 0:
            raise ValueError("a heartbeat needs a period > 0 (leave it out to disable it)")
        self.period_ms = period_ms
        self._vitals = vitals
        self._last_ms: int | None = None
        self.sent = 0

    def sealed(self, now_ms: int) -> None:
        """A batch was sealed at `now_ms` (or the agent started): the silence starts again."""
        self._last_ms = now_ms

    def due_ms(self, now_ms: int) -> int:
        """When the next heartbeat is due. A wall clock stepped back before the last batch restarts the
        count from now: the heartbeat then comes at most one period late, never a step late."""
        if self._last_ms is None or now_ms < self._last_ms:
            self._last_ms = now_ms
        return self._last_ms + self.period_ms

    def event(self, now_ms: int) -> HealthEvent:
        """The heartbeat event to seal at `now_ms`."""
        self.sent += 1
        detail = json.dumps(dataclasses.asdict(self._vitals()), separators=(",", ":"))
        return HealthEvent(now_ms, SOURCE, KIND, detail)
