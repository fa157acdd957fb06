"""`gateway buffer stats|recent|outbox|gaps`: look into the agent's buffer, read-only, while it runs.

Exit codes: 0 printed, 3 the buffer file is missing or unreadable.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from buffer import inspection
from gateway.errors import StorageError

F = TypeVar("F", bound=Callable[..., Any])
EXIT_UNREADABLE = 3


@click.group(name="buffer")
def group() -> None:
    """Inspect the store-and-forward buffer (read-only, safe while the agent runs)."""


def _common(command: F) -> F:
    command = click.option("--json", "as_json", is_flag=True, help="one JSON document")(command)
    return click.option(
        "--state-dir",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="the agent's state directory (holds buffer.db)",
    )(command)


@contextmanager
def _opened(state_dir: Path) -> Iterator[sqlite3.Connection]:
    try:
        conn = inspection.open_readonly(state_dir)
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_UNREADABLE) from None
    try:
        yield conn
    except sqlite3.Error as exc:
        click.echo(f"error: cannot read the buffer: {exc}", err=True)
        raise SystemExit(EXIT_UNREADABLE) from None
    finally:
        conn.close()


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    Console().print(table)


@group.command()
@_common
def stats(state_dir: Path, as_json: bool) -> None:
    """Readings pending and batched, outbox, gaps, sizes."""
    with _opened(state_dir) as conn:
        result = inspection.summary(conn)
    if as_json:
        click.echo(json.dumps(asdict(result)))
        return
    rows = [[k, _when(v) if k.endswith("_ms") else v] for k, v in asdict(result).items()]
    _table("buffer", ["what", "value"], rows)


@group.command()
@_common
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@click.option("--sensor", default=None, help="only this sensor id")
def recent(state_dir: Path, as_json: bool, limit: int, sensor: str | None) -> None:
    """The newest raw readings in the buffer, newest first."""
    with _opened(state_dir) as conn:
        found = inspection.recent(conn, limit, sensor)
    if as_json:
        click.echo(json.dumps([{**asdict(r), "quality": int(r.quality)} for r in found]))
        return
    rows = [[_when(r.ts_ms), r.sensor, r.quantity, r.value, r.unit, int(r.quality)] for r in found]
    _table("recent readings", ["time", "sensor", "quantity", "value", "unit", "quality"], rows)


@group.command()
@_common
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
def outbox(state_dir: Path, as_json: bool, limit: int) -> None:
    """Signed batches waiting for the backend's acknowledgement, in seq order."""
    with _opened(state_dir) as conn:
        rows = inspection.outbox(conn, limit)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows]))
        return
    cells = [[r.seq, r.readings, r.bytes, _when(r.created_ms)] for r in rows]
    _table("outbox", ["seq", "readings", "bytes", "sealed"], cells)


@group.command()
@_common
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
def gaps(state_dir: Path, as_json: bool, limit: int) -> None:
    """Ranges the buffer had to give up (full disk, quota), newest first."""
    with _opened(state_dir) as conn:
        rows = inspection.gaps(conn, limit)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows]))
        return
    cells = [
        [r.sensor, r.quantity, _when(r.from_ms), _when(r.to_ms), r.count, r.reason, r.batch_seq] for r in rows
    ]
    _table("gaps", ["sensor", "quantity", "from", "to", "count", "reason", "batch"], cells)
