"""Human views (rich tables) of the agent's status and selftest."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from kernel import wallclock

_STATE_STYLE = {"ok": "green", "waiting": "yellow", "stale": "bold red"}


def clock_time(ms: int | None) -> str:
    """HH:MM:SS UTC of a wall-clock millisecond timestamp, '-' for none."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def ago(ms: int | None, now_ms: int) -> str:
    """A timestamp with its age: '12:03:04 (5 s ago)'."""
    if ms is None:
        return "-"
    return f"{clock_time(ms)} ({duration(max(0.0, (now_ms - ms) / 1000))} ago)"


def duration(seconds: float) -> str:
    """3 s, 4 min 10 s, 2 h 05 min, 3 d 4 h."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def decimals_of(step: float | None) -> int | None:
    """Digits after the point a value with resolution `step` has (0.1 -> 1, 5 -> 0); None: not declared."""
    if step is None or step <= 0:
        return None
    return max(0, -math.floor(math.log10(step) + 1e-9))


def shown_value(value: float, step: float | None) -> str:
    """A value as a technician reads it: at the sensor's declared resolution, else 6 significant digits."""
    digits = decimals_of(step)
    if digits is None or math.isnan(value):
        return f"{value:.6g}"
    return f"{round(value / step) * step:.{digits}f}" if step else f"{value:.6g}"


def size(n: int | None) -> str:
    """Bytes as KiB/MiB/GiB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _values(last: Mapping[str, Mapping[str, Any]], limit: int = 3) -> str:
    shown = [f"{q}={v['value']:.6g} {v['unit']}".rstrip() for q, v in list(last.items())[:limit]]
    if len(last) > limit:
        shown.append(f"+{len(last) - limit}")
    return ", ".join(shown) or "-"


def sensor_table(sensors: Mapping[str, Mapping[str, Any]], now_ms: int) -> Table:
    """One row per configured sensor: state, last reading and values, rate, errors, why stale."""
    table = Table(title="sensors")
    table.add_column("sensor", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("last reading", no_wrap=True)
    table.add_column("/min", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("values / last error")
    for sensor, view in sensors.items():
        style = _STATE_STYLE.get(view["state"], "")
        table.add_row(
            sensor,
            f"[{style}]{view['state']}[/{style}]",
            ago(view["last_reading_ms"], now_ms),
            f"{view['readings_per_min']:g}",
            str(view["errors"]),
            _values(view.get("last", {})),
        )
        error = view.get("last_error")
        if error is not None:
            table.add_row(
                "", "", "", "", "", f"{clock_time(error['ts_ms'])} {error['kind']}: {error['detail']}"
            )
        if view.get("reason"):
            table.add_row("", "", "", "", "", f"[{style}]↳ {view['reason']}[/{style}]")
    return table


def _pairs(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    return table


def uplink_table(uplink: Mapping[str, Any], now_ms: int) -> Table:
    """State, target, acknowledged batches, backlog, last error with its time."""
    state = uplink.get("state", "?")
    style = {"connected": "green", "idle": "green"}.get(state, "bold red")
    age = uplink.get("backlog_age_s")
    error = uplink.get("last_error")
    return _pairs(
        "uplink",
        [
            ("state", f"[{style}]{state}[/{style}] to {uplink.get('target', '?')}"),
            (
                "acknowledged",
                f"{uplink.get('batches_acked', 0)} batches, {uplink.get('readings_acked', 0)} readings",
            ),
            (
                "backlog",
                f"{uplink.get('backlog_batches', 0)} batches"
                + ("" if age is None else f", oldest {duration(age)}"),
            ),
            ("last error", "-" if not error else f"{ago(uplink.get('last_error_ms'), now_ms)} {error}"),
        ],
    )


def buffer_table(buffer: Mapping[str, Any], store: Mapping[str, Any]) -> Table:
    """Database size, free disk, bytes written since start, the store's counters."""
    return _pairs(
        "buffer",
        [
            ("database", f"{size(buffer.get('db_bytes'))} ({buffer.get('path', '?')}, with its WAL)"),
            ("free disk", size(buffer.get("free_bytes"))),
            ("written since start", size(buffer.get("written_bytes"))),
            (
                "readings",
                f"{store.get('committed', 0)} committed, {store.get('pending', 0)} not yet batched, "
                f"{store.get('dropped', 0)} dropped",
            ),
            (
                "errors",
                f"{store.get('errors', 0)}"
                + (f" (last: {store['last_error']})" if store.get("last_error") else ""),
            ),
        ],
    )


def lora_table(lora: Mapping[str, Mapping[str, Any]], now_ms: int) -> Table:
    """LoRa devices: last seen, link quality, frame counter."""
    table = Table("device", "last seen", "RSSI", "SNR", "FCnt", title="LoRa devices")
    for device, view in lora.items():
        rssi, snr, fcnt = view.get("rssi"), view.get("snr"), view.get("fcnt")
        table.add_row(
            device,
            ago(view.get("last_seen_ms"), now_ms),
            "-" if rssi is None else f"{rssi:g} dBm",
            "-" if snr is None else f"{snr:g} dB",
            "-" if fcnt is None else str(fcnt),
        )
    return table


def modbus_table(drivers: Mapping[str, Any]) -> Table | None:
    """Modbus slaves with their breaker state (alive, dead and probed slowly)."""
    table = Table(
        "bus", "sensor", "unit", "breaker", "polls ok", "failed", "exceptions", title="Modbus slaves"
    )
    rows = 0
    for name, stats in drivers.items():
        if not isinstance(stats, Mapping) or "slaves" not in stats:
            continue
        for slave in stats["slaves"]:
            state = slave["state"]
            shown = state if state == "alive" else f"[bold red]{state}[/bold red]"
            table.add_row(
                name.removeprefix("modbus:"),
                slave["sensor"],
                str(slave["unit"]),
                shown,
                str(slave["polls_ok"]),
                str(slave["polls_failed"]),
                str(slave["exception_responses"]),
            )
            rows += 1
    return table if rows else None


def _console() -> Console:
    """A terminal's own width; 140 columns when piped (rich would squeeze the tables into 80)."""
    console = Console()
    return console if console.is_terminal else Console(width=140)


def _month_bytes(traffic: dict[str, Any]) -> int:
    """The last 30 days on the air, or the agent's own bytes where the kernel gave no TCP counts."""
    return int(traffic.get("last_30_days_bytes_on_air") or traffic.get("last_30_days_app_bytes") or 0)


def render_status(status: dict[str, Any], console: Console | None = None) -> None:
    """Print the status of a running agent as tables."""
    console = console or _console()
    now_ms = wallclock.now_ms()
    agent = status.get("agent") or {}
    console.print(
        f"[bold]gateway {status.get('gateway_id')}[/bold]  agent {agent.get('version', '?')}, "
        f"up {duration(agent.get('uptime_s', 0))}, pid {agent.get('pid', '?')}, kid {agent.get('kid', '?')}"
    )
    console.print(f"config {agent.get('config_path') or '?'}")
    console.print(sensor_table(status.get("sensors") or {}, now_ms))
    console.print(uplink_table(status.get("uplink") or {}, now_ms))
    traffic = (status.get("uplink") or {}).get("traffic")
    if traffic:  # what the data plan sees (docs/lte.md)
        console.print(
            f"uplink today: {traffic['today_bytes_on_air'] / 1000:.1f} KB on the air, {traffic['today_readings']}"
            f" readings, {traffic['today_bytes_per_reading']} B/reading; yesterday"
            f" {traffic['yesterday_bytes_on_air'] / 1000:.1f} KB; last 30 days (restarts included)"
            f" {_month_bytes(traffic) / 1000:.1f} KB,"
            f" {traffic.get('last_30_days_readings', 0)} readings"
        )
    console.print(buffer_table(status.get("buffer") or {}, status.get("store") or {}))
    clock = status.get("clock")
    if clock is None:
        console.print("clock: not checked (clock.check = off)")
    else:
        synced = clock.get("synchronised")
        text = {True: "[green]synchronised[/green]", False: "[bold red]NOT synchronised[/bold red]"}.get(
            synced, "unknown"
        )
        console.print(
            f"clock: {text}, {clock.get('steps', 0)} steps, {clock.get('unsynced_readings', 0)} readings flagged"
        )
    if status.get("lora"):
        console.print(lora_table(status["lora"], now_ms))
    if (modbus := modbus_table(status.get("drivers") or {})) is not None:
        console.print(modbus)
    troubled = [t for t in status.get("tasks", []) if t["restarts"] or t["failing"]]
    if troubled:
        tasks = Table("task", "restarts", "failing", "last error", title="supervised tasks with failures")
        for task in troubled:
            when = clock_time(task.get("last_error_ms"))
            tasks.add_row(
                task["name"], str(task["restarts"]), str(task["failing"]), f"{when} {task['last_error']}"
            )
        console.print(tasks)


def render_selftest(result: Mapping[str, Any], console: Console | None = None) -> None:
    """The selftest as a table with a closing verdict."""
    console = console or _console()
    table = Table("check", "result", "detail", title=f"selftest ({result.get('mode', 'agent')})")
    for check in result["checks"]:
        verdict = "[green]pass[/green]" if check["passed"] else "[bold red]FAIL[/bold red]"
        table.add_row(check["check"], verdict, check["detail"])
    console.print(table)
    if result["passed"]:
        console.print(f"[green]all {result['count']} checks passed[/green]")
    else:
        console.print(f"[bold red]failed: {', '.join(result['failed'])}[/bold red]")
