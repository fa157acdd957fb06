"""What technicians ask the running agent through its control socket (docs/control.md).

Read-only: `status`, `readings` (a live stream), `selftest`, `lora_uplinks`, `modbus_read` (a read
queued into the bus scheduler that owns the bus). Mutating: `flush` (seal now, send now, reconnect
the uplink now). Every request is bounded in time; a bus request waits at most its own timeout
plus the poll it may queue behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from buffer import Store
from drivers.base import Driver
from drivers.lora.config import CodecChoice
from drivers.lora.forwarder import PacketForwarderServer
from drivers.modbus.bus import ModbusBus, OneOffRead
from drivers.modbus.errors import BusLost, ExceptionResponse, SlaveTimeout
from drivers.modbus.registers import RegisterKind
from gateway import selftest
from gateway.batcher import Batcher
from gateway.config import GatewayConfig
from gateway.control import ControlServer, RequestFailed, to_jsonable
from gateway.health import ReadingFeed, ReadingFilter, SensorBoard, quality_names
from gateway.supervisor import Supervised
from gateway.uplink import Uplink
from kernel.errors import ProtocolError
from kernel.model import Reading

#: the longest a `flush` waits for the backlog to drain
MAX_FLUSH_WAIT_S = 60.0
#: a one-off Modbus read may wait for the poll in progress: a full poll of a slow slave takes ~3 s
BUS_QUEUE_S = 5.0
#: the longest answer timeout a technician may ask of a slave
MAX_BUS_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AgentParts:
    """The running agent's parts the requests look at (built once the agent has opened them)."""

    config: GatewayConfig
    config_path: Path | None
    kid: bytes
    store: Store
    batcher: Batcher
    uplink: Uplink
    uplink_task: Supervised
    drivers: list[Driver]
    board: SensorBoard
    feed: ReadingFeed
    base_status: Callable[[], dict[str, Any]]
    clock_synchronised: Callable[[], bool | None]
    started_ms: int


def agent_version() -> str:
    """The installed package's version."""
    try:
        return version("rostock-gateway")
    except PackageNotFoundError:
        return "unknown"


def written_bytes() -> int | None:
    """Bytes this process caused to be written to storage (the kernel's /proc/self/io), None elsewhere."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class AgentOperations:
    """The request handlers, registered on the agent's control server."""

    def __init__(
        self,
        parts: AgentParts,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.parts = parts
        self._monotonic = monotonic
        self._wall = wall_clock

    def register(self, server: ControlServer) -> None:
        """Every request this agent answers."""
        server.handle("status", self.status)
        server.handle("flush", self.flush)
        server.handle("selftest", self.selftest)
        server.handle("modbus_read", self.modbus_read)
        server.handle("lora_uplinks", self.lora_uplinks)
        server.stream("readings", self.readings)

    async def status(self, _arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The statistics of every part plus the technician's view: sensors, uplink, buffer, agent."""
        p = self.parts
        status = p.base_status()
        status["agent"] = {
            "version": agent_version(),
            "pid": os.getpid(),
            "started_ms": p.started_ms,
            "uptime_s": round(self._monotonic() - p.board.started, 1),
            "config_path": None if p.config_path is None else str(p.config_path),
            "kid": p.kid.hex(),
            "watchers": p.feed.watchers,
        }
        status["sensors"] = p.board.view(self._monotonic())
        status["uplink"] = {**to_jsonable(status["uplink"]), **await self._uplink_view()}
        status["buffer"] = await asyncio.to_thread(self._buffer_view)
        status["lora"] = self._lora_view(status["sensors"])
        return status

    async def _uplink_view(self) -> dict[str, Any]:
        p = self.parts
        oldest = await asyncio.to_thread(p.store.undelivered, limit=1)
        task = p.uplink_task.statistics()
        connected = p.uplink.state in ("connected", "idle")
        return {
            "target": _target(p.config),
            # the error stays visible while the link is down, and is cleared once it is up again
            "last_error": None if connected else (task.last_error or None),
            "last_error_ms": None if connected else task.last_error_ms,
            "backlog_batches": p.store.statistics().outbox_rows,
            "backlog_age_s": round(self._wall() - oldest[0].created_ms / 1000, 1) if oldest else None,
        }

    def _buffer_view(self) -> dict[str, Any]:
        p = self.parts
        try:
            free: int | None = shutil.disk_usage(p.config.state_dir).free
        except OSError:
            free = None
        return {
            "path": str(p.config.state_dir / "buffer.db"),
            "db_bytes": p.store.statistics().db_bytes,
            "free_bytes": free,
            "written_bytes": written_bytes(),
        }

    def _lora_view(self, sensors: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        lora_ids = [s.id for s in self.parts.config.sensors if isinstance(s.section, CodecChoice)]
        recent = self._recent_uplinks()
        view = {}
        for sensor in lora_ids:
            last = sensors.get(sensor, {}).get("last", {})
            uplinks = recent.get(sensor) or [{}]
            view[sensor] = {
                "last_seen_ms": sensors.get(sensor, {}).get("last_reading_ms"),
                "rssi": last.get("rssi", {}).get("value"),
                "snr": last.get("snr", {}).get("value"),
                "fcnt": uplinks[-1].get("fcnt"),
            }
        return view

    def _recent_uplinks(self) -> dict[str, list[dict[str, Any]]]:
        recent: dict[str, list[dict[str, Any]]] = {}
        for driver in self.parts.drivers:
            if isinstance(driver, PacketForwarderServer):
                recent.update(driver.recent_uplinks())
        return recent

    async def lora_uplinks(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The last uplinks of one LoRaWAN device (or of all), with frame counter and link quality."""
        recent = self._recent_uplinks()
        device = arguments.get("device")
        if device is None:
            return {"uplinks": recent}
        if not isinstance(device, str):
            raise RequestFailed("bad_request", "device is a sensor id")
        if device not in {s.id for s in self.parts.config.sensors}:
            raise RequestFailed("not_found", f"no sensor {device!r} in the configuration")
        return {"uplinks": {device: recent.get(device, [])}}

    async def flush(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Seal what is committed now, reconnect a failed uplink now, wait up to `wait_s` for the backlog."""
        try:
            wait_s = max(0.0, min(float(arguments.get("wait_s", 0)), MAX_FLUSH_WAIT_S))
        except (TypeError, ValueError):
            raise RequestFailed("bad_request", "wait_s is a number of seconds") from None
        p = self.parts
        await p.store.flush()
        sealed = await p.batcher.seal(upto_ts_ms=None)
        reconnect = p.uplink.state != "connected" and p.uplink_task.retry_now()
        drained = await self._drain(wait_s)
        return {
            "sealed_batches": sealed,
            "reconnecting": reconnect,
            "uplink": p.uplink.state,
            "backlog_batches": p.store.statistics().outbox_rows,
            "drained": drained,
        }

    async def _drain(self, wait_s: float) -> bool:
        store, uplink = self.parts.store, self.parts.uplink
        try:
            async with asyncio.timeout(wait_s):
                while store.statistics().outbox_rows:
                    uplink.delivered.clear()
                    await uplink.delivered.wait()
        except TimeoutError:
            return False
        return True

    async def selftest(self, _arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Every check of `gateway selftest` judged on what the running agent saw."""
        p = self.parts
        status = await self.status({})
        checks = selftest.sensor_checks(status["sensors"])
        checks.append(selftest.uplink_check(status["uplink"], p.config))
        checks.append(selftest.clock_check(p.clock_synchronised(), p.config.clock.check == "kernel"))
        checks.append(await asyncio.to_thread(selftest.disk_check, p.config))
        checks.append(await asyncio.to_thread(selftest.key_check, p.config))
        checks.append(await asyncio.to_thread(selftest.coder_check))
        return {"checks": [c.as_json() for c in checks], **selftest.summary(checks)}

    async def modbus_read(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """One read queued into the scheduler of the bus that owns the slave; never interleaves with a poll."""
        bus = self._bus(arguments)
        try:
            read = OneOffRead(
                unit=int(arguments["unit"]),
                kind=RegisterKind(arguments["kind"]),
                address=int(arguments["address"]),
                count=int(arguments.get("count", 1)),
                timeout_s=min(float(arguments.get("answer_timeout_s", 1.0)), MAX_BUS_TIMEOUT_S),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise RequestFailed("bad_request", f"modbus_read needs unit, kind, address: {exc}") from None
        try:
            async with asyncio.timeout(read.timeout_s + BUS_QUEUE_S):
                words = await bus.read_once(read)
        except ExceptionResponse as exc:
            raise RequestFailed(
                "exception_response", f"{exc.name} (unit {read.unit}, address {read.address})"
            ) from None
        except (SlaveTimeout, TimeoutError):
            raise RequestFailed(
                "timeout", f"no answer from unit {read.unit} at address {read.address} on {bus.name}"
            ) from None
        except (BusLost, ProtocolError) as exc:
            raise RequestFailed("bus", f"{bus.name}: {exc}") from None
        return {"bus": bus.name, "unit": read.unit, "address": read.address, "words": words}

    def _bus(self, arguments: Mapping[str, Any]) -> ModbusBus:
        """The bus named by `sensor` (one of its slaves) or `endpoint` (HOST:PORT or the serial device)."""
        buses = [d for d in self.parts.drivers if isinstance(d, ModbusBus)]
        sensor, endpoint = arguments.get("sensor"), arguments.get("endpoint")
        if not isinstance(sensor, str | None) or not isinstance(endpoint, str | None):
            raise RequestFailed("bad_request", "sensor and endpoint are names")
        for bus in buses:
            if sensor is not None and any(s.sensor == sensor for s in bus.slaves):
                return bus
            if endpoint is not None and endpoint in (str(bus.link.endpoint), _device(bus)):
                return bus
        known = ", ".join(str(b.link.endpoint) for b in buses) or "none"
        raise RequestFailed(
            "not_found", f"the agent runs no Modbus bus {sensor or endpoint!r} (its buses: {known})"
        )

    async def readings(self, arguments: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Live readings as the agent accepts them, optionally of some sensors or quantities, `count` at most."""
        known = {s.id for s in self.parts.config.sensors}
        sensors = frozenset(_names(arguments.get("sensors")))
        if unknown := sorted(sensors - known):
            raise RequestFailed("not_found", f"no sensor {', '.join(unknown)} in the configuration")
        wanted = ReadingFilter(sensors, frozenset(_names(arguments.get("quantities"))))
        try:
            limit = int(arguments.get("count", 0)) or None
        except (TypeError, ValueError):
            raise RequestFailed("bad_request", "count is a number of readings") from None
        return self._readings(wanted, limit)

    async def _readings(self, wanted: ReadingFilter, limit: int | None) -> AsyncIterator[dict[str, Any]]:
        sent = lost = 0
        with self.parts.feed.watch(wanted) as watcher:
            while limit is None or sent < limit:
                reading = await watcher.queue.get()
                if watcher.lost > lost:
                    yield {"lost": watcher.lost - lost}
                    lost = watcher.lost
                yield {"reading": _reading_json(reading)}
                sent += 1


def _reading_json(reading: Reading) -> dict[str, Any]:
    return {
        "sensor": reading.sensor,
        "quantity": reading.quantity,
        "ts_ms": reading.ts_ms,
        "value": reading.value,
        "unit": reading.unit,
        "quality": quality_names(reading.quality),
    }


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise RequestFailed("bad_request", "sensors and quantities are a name or a list of names")


def _device(bus: ModbusBus) -> str:
    return str(getattr(bus.link.endpoint, "port", ""))


def _target(config: GatewayConfig) -> str:
    if config.uplink.transport == "https":
        return str(config.uplink.https.url)
    mqtt = config.uplink.mqtt
    return f"mqtt{'s' if mqtt.tls else ''}://{mqtt.host}:{mqtt.port}"
