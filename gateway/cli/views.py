"""Human views (rich tables) of the agent's status."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def render_status(status: dict[str, Any]) -> None:
    """Print the status of a running agent as tables."""
    console = Console()
    console.print(f"[bold]gateway {status.get('gateway_id')}[/bold]")
    for part in ("store", "batcher", "uplink", "clock"):
        values = status.get(part) or {}
        table = Table(title=part, show_header=False)
        for key, value in values.items():
            table.add_row(key, str(value))
        console.print(table)
    tasks = Table("task", "restarts", "failing", "last error", title="supervised tasks")
    for task in status.get("tasks", []):
        tasks.add_row(task["name"], str(task["restarts"]), str(task["failing"]), task["last_error"])
    console.print(tasks)
    produced = Table("sensor", "readings", title="readings by sensor (since start)")
    for sensor, count in sorted(status.get("produced", {}).items()):
        produced.add_row(sensor, str(count))
    console.print(produced)
    traffic = (status.get("uplink") or {}).get("traffic")
    if traffic:  # what the data plan sees (docs/lte.md)
        console.print(
            f"uplink today: {traffic['today_bytes_on_air'] / 1000:.1f} KB on the air, {traffic['today_readings']}"
            f" readings, {traffic['today_bytes_per_reading']} B/reading; yesterday"
            f" {traffic['yesterday_bytes_on_air'] / 1000:.1f} KB"
        )
