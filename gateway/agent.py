"""The agent's runtime: one TaskGroup with supervised drivers, the batcher, the uplink and the control socket."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from buffer import Store, StoreOptions
from drivers.base import Driver
from gateway import signing_key, wire
from gateway.batcher import Batcher
from gateway.catalogue import GatewayCatalogue, ResendRule
from gateway.clock import ClockWatch, sample_now
from gateway.config import GatewayConfig
from gateway.control import ControlServer
from gateway.health import ReadingFeed, SensorBoard
from gateway.heartbeat import Heartbeat, Vitals
from gateway.liveness import Progress
from gateway.operations import AgentOperations, AgentParts
from gateway.plausibility import Plausibility
from gateway.sealing import Due, SealingRules
from gateway.sensors import SeriesCatalog, build_drivers
from gateway.statelock import StateLock
from gateway.supervisor import Supervised
from gateway.uplink import Uplink, open_uplink
from gateway.uplink.traffic import Traffic
from gateway.watchdog import ReadingRate, ServiceWatch, probe_writer, status_line
from gateway.window_routing import Windowing, policies_of
from kernel.backoff import Backoff
from kernel.errors import StorageError
from kernel.model import HealthEvent, Quality, Reading
from kernel.wallclock import now_ms

log = structlog.get_logger(__name__)

#: how often the wall clock's sync state and steps are checked
CLOCK_SAMPLE_S = 1.0
#: how long a stopping agent lets the uplink send what is already sealed
SHUTDOWN_SEND_GRACE_S = 1.5
#: how often the uplink's per-day traffic totals are stored: a crash loses at most this much of the
#: count, for one small row write a minute (the writer group-commits readings every second anyway)
TRAFFIC_SAVE_S = 60.0


class StoreSink:
    """Where drivers push: straight into the store's group-commit queue (non-blocking)."""

    def __init__(
        self,
        store: Store,
        board: SensorBoard | None = None,
        monotonic: Any = time.monotonic,
        plausibility: Plausibility | None = None,
    ) -> None:
        self._store = store
        #: per-sensor health for `gateway status`, and the live feed `gateway watch` reads
        self.board = board if board is not None else SensorBoard({}, monotonic())
        self.feed = ReadingFeed()
        self._monotonic = monotonic
        self.plausibility = plausibility or Plausibility()
        self.readings: Counter[str] = Counter()
        self.events = 0
        #: cleared while the wall clock is not synchronised: readings are then flagged CLOCK_UNSYNCED
        self.clock_synchronised = True
        self.unsynced_readings = 0
        #: told of every reading and event handed in (the batcher's latency budgets)
        self.noted: Callable[[Reading], None] = lambda reading: None
        self.noted_event: Callable[[], None] = lambda: None

    def reading(self, reading: Reading) -> None:
        """Queue one reading for the next group commit (flagged when implausible or taken on a bad clock)."""
        reading = self.plausibility.check(reading)
        if not self.clock_synchronised:
            r = reading
            reading = Reading(
                r.sensor, r.quantity, r.ts_ms, r.value, r.unit, r.quality | Quality.CLOCK_UNSYNCED
            )
            self.unsynced_readings += 1
        self._store.submit((reading,))
        self.noted(reading)
        self.readings[reading.sensor] += 1
        self.board.reading(reading, self._monotonic())
        self.feed.publish(reading)

    def event(self, event: HealthEvent) -> None:
        """Queue one health event; it is uploaded with the next batch."""
        self._store.submit_event(event)
        self.noted_event()
        self.events += 1
        self.board.event(event)
        log.info("health event", source=event.source, kind=event.kind, detail=event.detail)


class Agent:
    """Runs a validated configuration until SIGTERM/SIGINT (or `stop()`)."""

    def __init__(
        self,
        config: GatewayConfig,
        config_path: Path | None = None,
        service: ServiceWatch | None = None,
        *,
        drivers: Callable[[GatewayConfig], list[Driver]] = build_drivers,
        uplink: Callable[..., Uplink] = open_uplink,
    ) -> None:
        self.config = config
        self.config_path = config_path
        #: what builds the drivers and opens the uplink: the configured ones, or a test's fakes
        self._build_drivers = drivers
        self._open_uplink = uplink
        #: what systemd is told (READY, STATUS, WATCHDOG); a no-op outside a notify unit
        self._service = service or ServiceWatch.from_environment()
        self._rate = ReadingRate()
        self._clock: ClockWatch | None = None
        self._stop = asyncio.Event()
        self._supervised: list[Supervised] = []
        self._drivers: list[Driver] = []
        self._store: Store | None = None
        self._batcher: Batcher | None = None
        self._uplink: Uplink | None = None
        self._sink: StoreSink | None = None
        self._started = time.monotonic()

    def stop(self) -> None:
        """Ask the agent to stop cleanly."""
        self._stop.set()

    async def run(self) -> None:
        """Open everything, run until asked to stop, then stop drivers, commit, seal, close."""
        config = self.config
        private_key = await asyncio.to_thread(signing_key.load_private_key, config.key_file)
        kid = wire.kid_for(private_key.public_key())
        config.state_dir.mkdir(parents=True, exist_ok=True)
        with StateLock.acquire(config.state_dir):  # before the buffer and the control socket are touched
            await self._run_locked(private_key, kid)

    async def _run_locked(self, private_key: Any, kid: bytes) -> None:
        config = self.config
        options = StoreOptions(
            commit_interval_s=config.buffer.commit_interval_s,
            max_rows_per_commit=config.buffer.max_rows_per_commit,
            max_bytes=config.buffer.max_bytes,
            min_free_bytes=config.buffer.min_free_bytes,
            policy=config.buffer.policy,
            keep_raw_s=config.buffer.keep_raw_s,
        )
        async with self._service.starting("opening the buffer (migration, integrity check)"):
            store = await asyncio.to_thread(Store.open, config.state_dir / "buffer.db", options)
        self._store = store
        try:
            await self._run_with(store, private_key, kid)
        finally:
            await asyncio.to_thread(store.close)
            self._service.close()
            log.info("agent stopped", **_counts(store))

    async def _run_with(self, store: Store, private_key: Any, kid: bytes) -> None:
        config = self.config
        sealed = asyncio.Event()
        stale_after = {s.id: s.stale_after_s for s in config.sensors if s.enabled}
        limits = {sensor.id: sensor.limits for sensor in config.sensors if sensor.limits}
        self._sink = sink = StoreSink(
            store, SensorBoard(stale_after, time.monotonic()), plausibility=Plausibility(limits)
        )
        if config.clock.check == "kernel":
            self._clock = ClockWatch(step_threshold_ms=config.clock.step_threshold_ms)
            self._observe_clock(sink)  # before the drivers start: their first readings are judged too
        self._drivers = self._build_drivers(config)
        batcher = self._batcher = Batcher(
            store,
            gateway_id=config.gateway_id,
            private_key=private_key,
            kid=kid,
            declare=SeriesCatalog(config),
            due=Due(SealingRules.of(config)),
            max_readings=config.batching.max_readings,
            sealed=sealed,
            windowing=Windowing(policies_of(config)),
            rollover=signing_key.pending_rollover(config.key_file, config.gateway_id),
            catalogue=GatewayCatalogue(ResendRule.of(config.batching)),
            heartbeat=self._heartbeat(),
        )
        sink.noted, sink.noted_event = batcher.note, batcher.note_event
        uplink = self._uplink = self._open_uplink(
            store, config.uplink, gateway_id=config.gateway_id, sealed=sealed
        )
        uplink.quiet_for = batcher.quiet_for
        since = uplink.traffic.keep_from(now_ms())
        uplink.traffic.restore(await asyncio.to_thread(store.traffic_days, since))
        control = ControlServer(config.state_dir / "control.sock")
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        log.info("agent started", gateway_id=config.gateway_id, kid=kid.hex(), drivers=len(self._drivers))
        try:
            async with asyncio.TaskGroup() as tasks:
                driver_tasks = [
                    tasks.create_task(self._supervise(f"driver:{d.name}", _runner(d, sink)))
                    for d in self._drivers
                ]
                batcher_task = tasks.create_task(self._supervise("batcher", batcher.run))
                uplink_task = tasks.create_task(
                    self._supervise(
                        "uplink", uplink.run, Backoff(initial_s=0.5, cap_s=reconnect_cap_s(config))
                    )
                )
                self._operations(sink, kid).register(control)
                control_task = tasks.create_task(control.run())
                clock_task = tasks.create_task(self._watch_clock(sink))
                watch_task = tasks.create_task(self._watch_service(store, batcher))
                traffic_task = tasks.create_task(
                    self._supervise("traffic", partial(_keep_traffic, store, uplink))
                )
                await asyncio.sleep(0)  # the tasks above have started
                self._service.ready(self._status_line())
                await self._stop.wait()
                log.info("agent stopping")
                self._service.stopping()
                await _cancel(watch_task)
                await _cancel(*driver_tasks)
                await store.flush()
                await _cancel(batcher_task)
                await batcher.seal(upto_ts_ms=None)
                await self._drain_briefly(store, uplink)
                await _cancel(uplink_task, control_task, clock_task, traffic_task)
                await _save_traffic(store, uplink.traffic)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _heartbeat(self) -> Heartbeat | None:
        """The heartbeat uplink.heartbeat_s asks for (None: 0, disabled)."""
        period_ms = round(self.config.uplink.heartbeat_s * 1000)
        return Heartbeat(period_ms, self._vitals) if period_ms > 0 else None

    def _vitals(self) -> Vitals:
        """What a heartbeat says about this agent now."""
        assert self._sink is not None and self._store is not None and self._uplink is not None
        sensors = self._sink.board.view(time.monotonic())
        stale = sum(1 for view in sensors.values() if view["stale"])
        store = self._store.statistics()
        traffic = self._uplink.traffic.statistics(now_ms())
        return Vitals(
            uptime_s=round(time.monotonic() - self._started),
            sensors_ok=len(sensors) - stale,
            sensors_stale=stale,
            backlog_readings=store.pending,
            outbox_batches=store.outbox_rows,
            today_bytes=traffic.today_bytes_on_air or traffic.today_app_bytes,
            yesterday_bytes=traffic.yesterday_bytes_on_air,
            last_30_days_bytes=traffic.last_30_days_bytes_on_air or traffic.last_30_days_app_bytes,
        )

    def _operations(self, sink: StoreSink, kid: bytes) -> AgentOperations:
        """The control socket's requests over the parts opened so far."""
        assert self._store is not None and self._batcher is not None and self._uplink is not None
        return AgentOperations(
            AgentParts(
                config=self.config,
                config_path=self.config_path,
                kid=kid,
                store=self._store,
                batcher=self._batcher,
                uplink=self._uplink,
                uplink_task=next(s for s in self._supervised if s.name == "uplink"),
                drivers=self._drivers,
                board=sink.board,
                feed=sink.feed,
                base_status=self.status,
                clock_synchronised=lambda: None if self._clock is None else self._clock.synchronised,
                started_ms=now_ms(),
            )
        )

    async def _watch_service(self, store: Store, batcher: Batcher) -> None:
        writer = Progress()
        parts = {"buffer-writer": writer, "batcher": batcher.progress}
        await self._service.watch(parts, self._status_line, lambda: probe_writer(store, writer))

    def _status_line(self) -> str:
        """STATUS= for systemctl: readings/min, backlog, uplink state."""
        total = sum(self._sink.readings.values()) if self._sink else 0
        rate = self._rate.observe(total, asyncio.get_running_loop().time())
        store = self._store.statistics() if self._store else None
        return status_line(rate, store, self._uplink.state if self._uplink else "not started")

    def _supervise(self, name: str, factory: Any, backoff: Backoff | None = None) -> Any:
        supervised = Supervised(name, factory, backoff)
        self._supervised.append(supervised)
        return supervised.run()

    async def _watch_clock(self, sink: StoreSink) -> None:
        while self._clock is not None:
            await asyncio.sleep(CLOCK_SAMPLE_S)
            self._observe_clock(sink)

    def _observe_clock(self, sink: StoreSink) -> None:
        assert self._clock is not None
        for event in self._clock.observe(sample_now()):
            sink.event(event)
        sink.clock_synchronised = self._clock.synchronised is not False

    async def _drain_briefly(self, store: Store, uplink: Uplink) -> None:
        """Give the uplink a moment to send what was just sealed (an on-demand link connects for it);
        the rest waits in the outbox."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_SEND_GRACE_S):
                while True:
                    uplink.delivered.clear()
                    if not await asyncio.to_thread(store.undelivered, limit=1):
                        return
                    await uplink.delivered.wait()

    def status(self) -> dict[str, Any]:
        """Everything `gateway status` shows: statistics of every part."""
        return {
            "gateway_id": self.config.gateway_id,
            "produced": dict(self._sink.readings) if self._sink else {},
            "out_of_range": dict(self._sink.plausibility.out_of_range) if self._sink else {},
            "store": self._store.statistics() if self._store else None,
            "batcher": self._batcher.statistics() if self._batcher else None,
            "uplink": self._uplink.statistics() if self._uplink else None,
            "clock": self._clock_status(),
            "drivers": {d.name: d.statistics() for d in self._drivers},
            "tasks": [s.statistics() for s in self._supervised],
        }

    def _clock_status(self) -> dict[str, Any] | None:
        if self._clock is None:
            return None
        flagged = self._sink.unsynced_readings if self._sink else 0
        return {**dataclasses.asdict(self._clock.statistics()), "unsynced_readings": flagged}


def reconnect_cap_s(config: GatewayConfig) -> float:
    """The longest pause between reconnects: a quarter of the latency budget (a link that returns is used
    well within it), at least 30 s and at most the NAT timeout, so a dead link costs a SYN now and then
    rather than a connection attempt every few seconds."""
    return max(30.0, min(config.batching.budget_s / 4, config.uplink.nat_timeout_s))


async def _keep_traffic(store: Store, uplink: Uplink) -> None:
    """Store the uplink's changed per-day totals every TRAFFIC_SAVE_S, forever."""
    while True:
        await asyncio.sleep(TRAFFIC_SAVE_S)
        await _save_traffic(store, uplink.traffic)


async def _save_traffic(store: Store, traffic: Traffic) -> None:
    """Store the days counted into since the last save; on a storage error they are tried again."""
    days = traffic.unsaved()
    if not days:
        return
    try:
        await asyncio.to_thread(store.save_traffic_days, days, keep_from_day=traffic.keep_from(now_ms()))
    except StorageError as exc:
        traffic.not_saved(days)
        log.warning("uplink traffic totals not stored, tried again later", error=str(exc))


def _runner(driver: Driver, sink: StoreSink) -> Any:
    async def run() -> None:
        await driver.run(sink)

    return run


async def _cancel(*tasks: asyncio.Task[Any]) -> None:
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)


def _counts(store: Store) -> dict[str, Any]:
    stats = store.statistics()
    return {"committed": getattr(stats, "committed", None), "pending": getattr(stats, "pending", None)}
