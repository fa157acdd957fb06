"""`gateway buffer status|recent|export|outbox|gaps`: look into the agent's buffer, read-only, while it runs.

The buffer is found with --state-dir, or with --config (the agent's configuration file, whose
state_dir holds it; default $GATEWAY_CONFIG or /etc/gateway/gateway.toml when it exists), or in the
packaged default /var/lib/gateway.
Exit codes: 0 printed, 2 invalid --config or time, 3 the buffer file is missing or unreadable.
"""

from __future__ import annotations

import copy
import csv
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from buffer import inspection, schema
from kernel.errors import StorageError

F = TypeVar("F", bound=Callable[..., Any])
EXIT_USAGE = 2
EXIT_UNREADABLE = 3
DEFAULT_STATE_DIR = Path("/var/lib/gateway")


@click.group(name="buffer")
def group() -> None:
    """Inspect the store-and-forward buffer (read-only, safe while the agent runs)."""


def _where(command: F) -> F:
    command = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="the agent's configuration file: its state_dir holds the buffer",
    )(command)
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"the agent's state directory (holds buffer.db) [default: {DEFAULT_STATE_DIR}]",
    )(command)


def _common(command: F) -> F:
    command = click.option("--json", "as_json", is_flag=True, help="one JSON document")(command)
    return _where(command)


def _state_dir(state_dir: Path | None, config_file: Path | None) -> Path:
    if state_dir is not None:
        return state_dir
    if config_file is None:
        from gateway.cli.configfile import default_config

        installed = default_config()  # GATEWAY_CONFIG or /etc/gateway/gateway.toml, when there
        if not installed.exists():
            return DEFAULT_STATE_DIR
        config_file = installed
    from gateway.config import load_config
    from kernel.errors import ConfigError

    try:
        return load_config(config_file).state_dir
    except ConfigError as exc:
        click.echo(f"{config_file}: invalid configuration\n{exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None


@contextmanager
def _opened(state_dir: Path | None, config_file: Path | None) -> Iterator[sqlite3.Connection]:
    try:
        conn = inspection.open_readonly(_state_dir(state_dir, config_file))
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_UNREADABLE) from None
    try:
        yield conn
    except (sqlite3.Error, *schema.GARBAGE_ERRORS) as exc:
        # a corrupt file: one line, never a traceback (the agent quarantines it at its next start)
        click.echo(f"error: cannot read the buffer: {type(exc).__name__}: {exc}", err=True)
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


@group.command(name="status")
@_common
def status(state_dir: Path | None, config_file: Path | None, as_json: bool) -> None:
    """Readings pending and batched, outbox, gaps, sizes (also: `stats`)."""
    with _opened(state_dir, config_file) as conn:
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
def recent(
    state_dir: Path | None, config_file: Path | None, as_json: bool, limit: int, sensor: str | None
) -> None:
    """The newest raw readings in the buffer, newest first."""
    from gateway.cli.views import shown_value
    from gateway.health import quality_names

    with _opened(state_dir, config_file) as conn:
        found = inspection.recent(conn, limit, sensor)
    if as_json:
        rows_json = [
            {**asdict(r), "quality": int(r.quality), "flags": quality_names(r.quality)} for r in found
        ]
        click.echo(json.dumps(rows_json))
        return
    steps = _resolutions(state_dir, config_file)
    rows = [
        [
            _when(r.ts_ms),
            r.sensor,
            r.quantity,
            shown_value(r.value, steps.get((r.sensor, r.quantity))),
            r.unit,
            ", ".join(quality_names(r.quality)) or "ok",
        ]
        for r in found
    ]
    _table("recent readings", ["time", "sensor", "quantity", "value", "unit", "quality"], rows)


def _resolutions(state_dir: Path | None, config_file: Path | None) -> dict[tuple[str, str], float]:
    """(sensor, quantity) -> the declared resolution, from the configuration when one is at hand."""
    from gateway.cli.configfile import default_config
    from gateway.config import load_config
    from kernel.errors import ConfigError

    path = config_file or (None if state_dir is not None else default_config())
    if path is None:
        return {}
    try:
        config = load_config(path)
    except ConfigError:
        return {}
    return {(s.id, q): step for s in config.sensors for q, step in s.resolution.items()}


@group.command()
@_common
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
def outbox(state_dir: Path | None, config_file: Path | None, as_json: bool, limit: int) -> None:
    """Signed batches waiting for the backend's acknowledgement, in seq order."""
    with _opened(state_dir, config_file) as conn:
        rows = inspection.outbox(conn, limit)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows]))
        return
    cells = [[r.seq, r.readings, r.bytes, _when(r.created_ms)] for r in rows]
    _table("outbox", ["seq", "readings", "bytes", "sealed"], cells)


@group.command()
@_common
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
def gaps(state_dir: Path | None, config_file: Path | None, as_json: bool, limit: int) -> None:
    """Ranges the buffer had to give up (full disk, quota), newest first."""
    with _opened(state_dir, config_file) as conn:
        rows = inspection.gaps(conn, limit)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows]))
        return
    cells = [
        [r.sensor, r.quantity, _when(r.from_ms), _when(r.to_ms), r.count, r.reason, r.batch_seq] for r in rows
    ]
    _table("gaps", ["sensor", "quantity", "from", "to", "count", "reason", "batch"], cells)


_stats_alias = copy.copy(status)
_stats_alias.hidden = True  # the name of earlier versions
group.add_command(_stats_alias, name="stats")


def _time_ms(text: str | None, option: str) -> int | None:
    """Milliseconds UTC from epoch milliseconds or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        click.echo(f"error: {option} {text!r} is neither epoch milliseconds nor an ISO 8601 time", err=True)
        raise SystemExit(EXIT_USAGE) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@group.command()
@_where
@click.option("--sensor", default=None, help="only this sensor id")
@click.option("--since", default=None, help="from this time on (ISO 8601, UTC by default, or epoch ms)")
@click.option("--until", default=None, help="before this time (ISO 8601 or epoch ms)")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="file instead of stdout"
)
def export(
    state_dir: Path | None,
    config_file: Path | None,
    sensor: str | None,
    since: str | None,
    until: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Every raw reading still in the buffer (batched or not), as CSV or JSON lines.

    Commit order, which is time order except for readings that arrived late.
    """
    since_ms, until_ms = _time_ms(since, "--since"), _time_ms(until, "--until")
    with _opened(state_dir, config_file) as conn:
        rows = inspection.export(conn, sensor, since_ms, until_ms)
        if output is None:
            count = _write_export(rows, fmt, sys.stdout)
        else:
            with output.open("w", newline="") as out:
                count = _write_export(rows, fmt, out)
            click.echo(f"{count} readings written to {output}", err=True)


EXPORT_COLUMNS = ["time", "ts_ms", "sensor", "quantity", "value", "unit", "quality", "batched"]


def _write_export(rows: Iterator[inspection.StoredReading], fmt: str, out: Any) -> int:
    count = 0
    writer = csv.writer(out, lineterminator="\n")
    if fmt == "csv":
        writer.writerow(EXPORT_COLUMNS)
    for stored in rows:
        r = stored.reading
        cells = [
            _when(r.ts_ms),
            r.ts_ms,
            r.sensor,
            r.quantity,
            r.value,
            r.unit,
            int(r.quality),
            stored.batched,
        ]
        if fmt == "csv":
            writer.writerow(cells)
        else:
            out.write(json.dumps(dict(zip(EXPORT_COLUMNS, cells, strict=True))) + "\n")
        count += 1
    return count
