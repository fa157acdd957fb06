"""`gateway selftest`: is this gateway working? One pass/fail line per check, the same with or without the agent.

With the agent running, the checks judge what it saw (its sensors' last readings, its uplink); with the
agent stopped, `run_offline` starts the configured drivers itself (`gateway.sensorcheck`, which
`python -m hil.runner` runs too) and connects to the broker once. Either way: every sensor delivered
within its expected interval, the uplink is connected and acknowledging, the wall clock is synchronised,
the buffer's disk has headroom, the key is readable, the compiled coder library loads and round-trips
(a broken install: `gateway wire coder` says the same, docs/service.md).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import signing_key
from gateway.clock import kernel_clock_synchronised
from gateway.config import GatewayConfig
from gateway.wire import ctxmix
from kernel.errors import ConfigError

#: a backlog older than this many slices plus the ack timeout means the uplink is not acknowledging
BACKLOG_SLICES = 3


@dataclass(frozen=True)
class Check:
    """One line of the selftest."""

    check: str
    passed: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        """The JSON line of `gateway selftest --json`."""
        return {"check": self.check, "passed": self.passed, "detail": self.detail}


def sensor_checks(sensors: Mapping[str, Mapping[str, Any]]) -> list[Check]:
    """One check per sensor from the agent's sensor board: a reading within `stale_after_s`."""
    checks = []
    for sensor, view in sensors.items():
        after = view["stale_after_s"]
        if view["last_reading_ms"] is None:
            detail = f"no reading yet ({view['silent_s']:.0f} s since start, expected within {after:g} s)"
            passed = False
        else:
            passed = view["state"] == "ok"
            detail = f"last reading {view['silent_s']:.0f} s ago (expected within {after:g} s)"
        if not passed and view.get("last_error"):
            detail += f"; last error: {view['last_error']['kind']}: {view['last_error']['detail']}"
        checks.append(Check(f"sensor {sensor}", passed, detail))
    return checks


def uplink_check(uplink: Mapping[str, Any], config: GatewayConfig) -> Check:
    """Connected, and no batch waiting longer than a few slices plus the ack timeout."""
    target = uplink.get("target", "")
    if uplink.get("state") == "idle":  # connect on demand: closed while nothing is due
        return Check("uplink", True, f"idle (connects on demand) to {target}")
    if uplink.get("state") != "connected":
        error = uplink.get("last_error") or "not connected yet"
        return Check("uplink", False, f"{uplink.get('state')} to {target}: {error}")
    age = uplink.get("backlog_age_s")
    limit = BACKLOG_SLICES * config.batching.budget_s + config.uplink.ack_timeout_s
    if age is not None and age > limit:
        batches = uplink.get("backlog_batches")
        return Check("uplink", False, f"connected to {target}, but {batches} batches wait for {age:.0f} s")
    return Check(
        "uplink", True, f"connected to {target}, {uplink.get('batches_acked', 0)} batches acknowledged"
    )


def clock_check(synchronised: bool | None, enabled: bool) -> Check:
    """The kernel says the wall clock is synchronised (NTP); not judged when `clock.check = off`."""
    if not enabled:
        return Check("clock", True, "not checked (clock.check = off)")
    if synchronised is None:
        return Check("clock", True, "this platform cannot tell; taken as synchronised")
    return Check(
        "clock", synchronised, "synchronised" if synchronised else "NOT synchronised (is NTP running?)"
    )


def disk_check(config: GatewayConfig) -> Check:
    """The buffer's file system has more free space than `buffer.min_free_bytes`."""
    try:
        free = shutil.disk_usage(_existing(config.state_dir)).free
    except OSError as exc:
        return Check("disk", False, f"cannot look at {config.state_dir}: {exc.strerror or exc}")
    needed = config.buffer.min_free_bytes
    return Check(
        "disk", free > needed, f"{free / 2**20:.0f} MiB free (the buffer keeps {needed / 2**20:.0f} MiB)"
    )


def key_check(config: GatewayConfig) -> Check:
    """The signing key loads (readable, private, Ed25519)."""
    try:
        signing_key.load_private_key(config.key_file)
    except ConfigError as exc:
        return Check("key", False, str(exc))
    return Check("key", True, f"{config.key_file} readable")


def coder_check(library: Path = ctxmix.LIBRARY) -> Check:
    """The compiled coder library loads, speaks this gateway's ABI and round-trips a column."""
    try:
        return Check("coder", True, ctxmix.self_check(library))
    except ctxmix.CoderUnavailable as exc:
        return Check("coder", False, str(exc))


def _existing(path: Any) -> Any:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def summary(checks: list[Check]) -> dict[str, Any]:
    """The closing JSON line."""
    failed = [c.check for c in checks if not c.passed]
    return {"passed": not failed, "failed": failed, "count": len(checks)}


async def run_offline(config: GatewayConfig, timeout_s: float) -> list[Check]:
    """The checks with the agent stopped: the drivers run here, the broker is connected once."""
    from gateway.sensorcheck import run_checks

    sink, _drivers = await run_checks(config, 1, timeout_s)
    checks = []
    for sensor, found in sink.checks.items():
        if found.readings:
            detail = f"first reading after {found.first_after_s:.1f} s"
        else:
            detail = f"no reading within {timeout_s:g} s"
            if found.events:
                detail += f"; {found.events[-1]}"
        checks.append(Check(f"sensor {sensor}", found.readings > 0, detail))
    checks.append(await _uplink_offline(config))
    checks.append(clock_check(kernel_clock_synchronised(), config.clock.check == "kernel"))
    checks.append(await asyncio.to_thread(disk_check, config))
    checks.append(await asyncio.to_thread(key_check, config))
    checks.append(await asyncio.to_thread(coder_check))
    return checks


async def _uplink_offline(config: GatewayConfig) -> Check:
    """MQTT: connect and subscribe once (nothing to acknowledge while the agent is stopped)."""
    if config.uplink.transport != "mqtt":
        return Check("uplink", True, f"{config.uplink.https.url}: not checked while the agent is stopped")
    import aiomqtt

    mqtt = config.uplink.mqtt
    target = f"{mqtt.host}:{mqtt.port}"
    try:
        async with asyncio.timeout(config.uplink.ack_timeout_s):
            client = aiomqtt.Client(
                mqtt.host, mqtt.port, username=mqtt.username, password=mqtt.password, identifier=None
            )
            async with client:
                await client.subscribe(f"{mqtt.topic.format(gateway_id=config.gateway_id)}/control", qos=1)
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        return Check("uplink", False, f"cannot connect to {target}: {exc}")
    return Check("uplink", True, f"connected to {target} (the agent is stopped: nothing to acknowledge)")
