"""Cuts committed readings into signed batches and seals them into the outbox (signed once, immutable)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import PendingSlice, Store, WindowProgress
from gateway import wire
from gateway.aggregation import WindowerStatistics
from gateway.catalogue import Declaration, GatewayCatalogue
from gateway.heartbeat import Heartbeat
from gateway.liveness import Progress
from gateway.sealing import Due
from gateway.signing_key import PendingRollover
from gateway.window_routing import Closed, Taken, Windowing
from kernel.model import Quality, Reading
from kernel.threads import in_thread
from kernel.wallclock import now_ms

log = structlog.get_logger(__name__)

#: the longest the batcher waits without looking at the wall clock (steps move its deadlines)
CLOCK_LOOK_S = 60.0
#: (sensor, quantity, unit) -> how that series is declared on the wire
SeriesDeclaration = Callable[[str, str, str], wire.SeriesInfo]


@dataclass(frozen=True)
class BatcherStatistics:
    """Counters of the batcher."""

    batches_sealed: int
    #: raw readings sealed (readings of windows-only sensors are counted by the windows)
    readings_sealed: int
    windows_sealed: int
    last_seq: int | None
    windowing: WindowerStatistics | None
    #: hex kid of the key batches are signed with (`gateway status` shows it)
    kid: str = ""
    #: a `gateway keys rotate` not yet announced in a sealed batch
    rollover_pending: bool = False
    #: batches sealed for a heartbeat (uplink.heartbeat_s)
    heartbeats: int = 0


class Batcher:
    """When a latency budget runs out (gateway.sealing): committed readings and windows -> encode -> sign -> outbox."""

    def __init__(
        self,
        store: Store,
        *,
        gateway_id: str,
        private_key: Ed25519PrivateKey,
        kid: bytes,
        declare: SeriesDeclaration,
        due: Due,
        max_readings: int,
        sealed: asyncio.Event,
        windowing: Windowing | None = None,
        clock: Callable[[], int] = now_ms,
        rollover: PendingRollover | None = None,
        catalogue: GatewayCatalogue | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._gateway_id = gateway_id
        self._key = private_key
        self._kid = kid
        self._declare = declare
        self._due = due
        #: set when a noted reading moved the next seal earlier
        self._sooner = asyncio.Event()
        self._max_readings = max_readings
        self._sealed = sealed
        self._windowing = windowing if windowing is not None and windowing.active else None
        #: whether the windowing state matches what the store sealed (rebuilt after any failure)
        self._restored = False
        self._batches = 0
        self._readings = 0
        self._windows = 0
        self._last_seq: int | None = None
        #: a `gateway keys rotate` the backend has not heard of: announced by the next batch
        self._rollover = rollover
        #: one series table for every batch, declared in full only when the resend rule says so
        self._catalogue = catalogue if catalogue is not None else GatewayCatalogue()
        #: a batch with an agent.heartbeat event after a silence (uplink.heartbeat_s), or never
        self._heartbeat = heartbeat
        #: the slice timer and `gateway flush` seal one at a time
        self._sealing = asyncio.Lock()
        #: the watchdog's view: busy while sealing, a beat per batch (a long backlog is progress)
        self.progress = Progress()

    def note(self, reading: Reading) -> None:
        """A reading was handed to the store: it must be sealed within its budget."""
        if self._due.note(reading, self._clock()):
            self._sooner.set()

    def quiet_for(self) -> float | None:
        """Seconds until the next seal is due (None: nothing waits); the uplink decides on idling by it."""
        deadline = self._due.deadline_ms()
        return None if deadline is None else max(0.0, (deadline - self._clock()) / 1000)

    def note_event(self) -> None:
        """A health event was handed to the store: it travels within the gateway's budget."""
        self._due.event(self._clock())
        self._sooner.set()

    async def run(self) -> None:
        """Seal whenever the earliest budget runs out, forever (readings left by a restart at once);
        a heartbeat after a silence of its period."""
        self.start(await asyncio.to_thread(self._store.last_sealed_ms))
        while True:
            self._sooner.clear()
            wait_s = await self.step()
            if wait_s is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._sooner.wait()

    def start(self, last_sealed_ms: int | None = None) -> None:
        """What a restart left (readings, events) goes out at once; the heartbeat's silence counts from
        the last batch the store sealed (an earlier run's too: a crash loop does not postpone it)."""
        now = self._clock()
        self._due.backlog(now)
        if self._heartbeat is not None:
            self._heartbeat.sealed(now if last_sealed_ms is None else last_sealed_ms)

    async def step(self) -> float | None:
        """Seal what is due, or a heartbeat; else the seconds until the next look (None: sealed now)."""
        now = self._clock()
        self._due.observe(now)
        deadline = self._due.deadline_ms()
        if deadline is not None and deadline <= now:
            await self.seal_due()
            return None
        if self._heartbeat is not None and self._heartbeat.due_ms(now) <= now:
            await self.beat()
            return None
        # look at the clock at least every CLOCK_LOOK_S: it may be stepped meanwhile
        wake = [d for d in (deadline, self._heartbeat_ms(now)) if d is not None]
        return min([CLOCK_LOOK_S, *((d - now) / 1000 for d in wake)])

    def _heartbeat_ms(self, now_ms: int) -> int | None:
        return None if self._heartbeat is None else self._heartbeat.due_ms(now_ms)

    async def beat(self) -> int:
        """Seal a heartbeat event (with whatever else is committed); returns the batches made."""
        assert self._heartbeat is not None
        event = self._heartbeat.event(self._clock())
        self._store.submit_event(event)
        log.info("heartbeat", detail=event.detail)
        return await self.seal_due()

    async def seal_due(self) -> int:
        """Commit what the drivers handed in, then seal all of it; returns the batches made."""
        self._due.sealed(self._clock())  # readings noted from here on wait for the next seal
        await self._store.flush()
        return await self.seal(upto_ts_ms=None)

    async def seal(self, *, upto_ts_ms: int | None) -> int:
        """Seal every committed, unbatched reading older than `upto_ts_ms` (None: all) and every window
        due now; returns the batches made."""
        made = 0
        async with self._sealing:
            with self.progress.working():
                # in_thread: a cancelled seal keeps the lock until its thread has sealed, so the
                # agent's final seal cannot run beside it (two threads sealing the same readings)
                while await in_thread(self._seal_next, upto_ts_ms):
                    made += 1
                    self._sealed.set()
                    self.progress.beat()
        return made

    def _seal_next(self, upto_ts_ms: int | None) -> bool:
        """Seal one batch (runs in a worker thread: CPU and disk); False when there was nothing to seal."""
        pending = self._store.pending(upto_ts_ms=upto_ts_ms, limit=self._max_readings)
        if self._windowing is None:
            if pending is None:
                return False
            self._seal_one(pending, Taken.everything_raw(len(pending)), Closed.nothing(), None)
            return True
        try:
            return self._seal_windowed(self._windowing, pending)
        except BaseException:
            self._restored = False  # the windows may hold readings the store did not seal: rebuild
            raise

    def _seal_windowed(self, windowing: Windowing, pending: PendingSlice | None) -> bool:
        self._restore(windowing)
        clock = self._clock()
        slice_ = pending if pending is not None else self._store.empty_slice()
        taken = windowing.take(
            slice_.series_keys, slice_.series, slice_.ts_ms, slice_.value, slice_.quality, arrived_ms=clock
        )
        closed = windowing.close(clock)
        if pending is None and not len(closed):
            return False
        self._seal_one(slice_, taken, closed, WindowProgress(clock, closed.marks))
        return True

    def _restore(self, windowing: Windowing) -> None:
        """Rebuild the windows from what the store sealed: replay batched readings, then resume."""
        if self._restored:
            return
        windowing.reset()
        state = self._store.window_state()
        if state.watermark_ms is not None:
            since, after = windowing.replay_from(state.watermark_ms), 0
            while (page := self._store.batched_since(since, after_chunk=after)).last_chunk is not None:
                windowing.replay(page)
                after = page.last_chunk
            windowing.resume(state)
            log.info(
                "windows restored",
                watermark_ms=state.watermark_ms,
                **dataclasses.asdict(windowing.statistics()),
            )
        self._restored = True

    def _seal_one(
        self, pending: PendingSlice, taken: Taken, closed: Closed, progress: WindowProgress | None
    ) -> None:
        """Encode, sign and store one batch."""
        seq = self._store.next_seq()
        rollover = self._rollover
        body, declaration = self.encode(
            seq, pending, taken, closed, None if rollover is None else rollover.statement
        )
        if rollover is None:
            blob = wire.sign(body, self._key, self._kid)
        else:  # signed by the key the backend knows, announcing the current one
            blob = wire.sign(body, rollover.old_key, rollover.old_kid)
        self._store.seal_batch(seq, blob, pending, progress, sealed_ms=self._clock())
        self._catalogue.sealed(declaration, self._clock())
        if self._heartbeat is not None:
            self._heartbeat.sealed(self._clock())
        if rollover is not None:
            rollover.complete()
            self._rollover = None
            log.info("key rollover sealed", seq=seq, old_kid=rollover.old_kid.hex(), kid=self._kid.hex())
        raw = int(np.count_nonzero(taken.raw))
        self._batches += 1
        self._readings += raw
        self._windows += len(closed)
        self._last_seq = seq
        log.info(
            "batch sealed",
            seq=seq,
            readings=raw,
            windowed=len(pending) - raw,
            windows=len(closed),
            bytes=len(blob),
            gaps=len(pending.gaps),
            catalogue=declaration.catalogue.hex(),
            declared=declaration.declare,
        )

    def encode(
        self,
        seq: int,
        pending: PendingSlice,
        taken: Taken,
        closed: Closed,
        rollover: wire.KeyRollover | None = None,
    ) -> tuple[bytes, Declaration]:
        """The compressed CBOR body of one batch (the raw part of `pending`, its gaps and events,
        `closed`) indexing the gateway's catalogue, and whether it declares it."""
        raw = np.flatnonzero(taken.raw)
        series_of_raw = pending.series[raw]
        used = np.unique(series_of_raw).tolist()
        table = self._catalogue.table_for(
            [pending.series_keys[key] for key in used]
            + [(g.sensor, g.quantity, g.unit) for g in pending.gaps]
            + list(closed.keys)
        )
        index = np.full(len(pending.series_keys), -1, np.int32)
        for key in used:
            index[key] = table.add(pending.series_keys[key])
        quality = pending.quality[raw] | np.where(taken.late[raw], int(Quality.LATE), 0).astype(np.uint16)
        readings = wire.ReadingColumns(
            series=index[series_of_raw],
            ts_ms=pending.ts_ms[raw],
            value=pending.value[raw],
            quality=quality,
        )
        gaps = [
            wire.Gap(table.add((g.sensor, g.quantity, g.unit)), g.from_ms, g.to_ms, g.count, g.reason)
            for g in pending.gaps
        ]
        windows = closed.columns
        if len(windows):
            window_index = np.array([table.add(k) for k in closed.keys], np.int32)
            windows = dataclasses.replace(windows, series=window_index[windows.series])
        events = [wire.Event(e.ts_ms, e.source, e.kind, e.detail) for e in pending.events]
        series = [self._declare(*key) for key in table.keys]
        now = self._clock()
        declaration = self._catalogue.plan(series, self._store.epoch, now)
        body = wire.encode_batch(
            gateway_id=self._gateway_id,
            seq=seq,
            epoch=self._store.epoch,
            created_ms=now,
            series=series,
            readings=readings,
            windows=windows,
            gaps=gaps,
            events=events,
            rollover=rollover,
            refer_to_catalogue=not declaration.declare,
        )
        return body, declaration

    def statistics(self) -> BatcherStatistics:
        """Counters for status and metrics."""
        windowing = self._windowing.statistics() if self._windowing is not None else None
        return BatcherStatistics(
            self._batches, self._readings, self._windows, self._last_seq, windowing,
            kid=self._kid.hex(), rollover_pending=self._rollover is not None,
            heartbeats=0 if self._heartbeat is None else self._heartbeat.sent,
        )  # fmt: skip
