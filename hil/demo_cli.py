"""What `gateway demo` runs once the harness is installed: the demo with a live view, ending in one JSON line."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hil.demo import Demo, Snapshot, default_workdir, is_tty
from kernel.errors import GatewayError


def _table(snap: Snapshot) -> Table:
    table = Table(title=f"gateway demo — {snap.elapsed_s:5.1f} s — {snap.phase}", show_header=True)
    for column in ("produced", "committed", "delivered", "stored", "verified", "rejected", "dups", "uplink"):
        table.add_column(column, justify="right")
    table.add_row(
        *(str(v) for v in (snap.produced, snap.committed, snap.delivered, snap.stored)),
        *(str(v) for v in (snap.verified, snap.rejected, snap.duplicates)),
        snap.uplink,
    )
    return table


def run(duration: float, rate: float, workdir: Path | None, config_path: Path) -> int:
    """The demo in `workdir` (a fresh scratch folder when None); the exit status: 0 when nothing was lost."""
    scratch = workdir is None  # a folder the demo made is removed again after a passing run
    workdir = workdir or default_workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(duration, workdir, rate, config_path)
    click.echo(f"demo files in {workdir}", err=True)
    try:
        result = _run(demo, is_tty())
    except GatewayError as exc:
        click.echo(f"demo failed: {exc}", err=True)
        return 1
    click.echo(json.dumps(result))
    passed = result["lost"] == 0 and result["produced"] > 0
    if result["produced"] == 0:
        click.echo("demo failed: the simulators produced nothing (see the logs in the demo folder)", err=True)
    if passed and scratch:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not passed:
        click.echo(f"demo files kept in {workdir}", err=True)
    return 0 if passed else 1


def _run(demo: Demo, tty: bool) -> dict[str, int]:
    if tty:
        with Live(_table(Snapshot()), refresh_per_second=4, console=Console(stderr=True)) as live:
            return demo.run(lambda snap: live.update(_table(snap)))
    last = [0.0]

    def show(snap: Snapshot) -> None:
        if time.monotonic() - last[0] >= 5.0:
            last[0] = time.monotonic()
            click.echo(
                f"{snap.elapsed_s:5.1f}s {snap.phase}: produced={snap.produced} committed={snap.committed} "
                f"delivered={snap.delivered} stored={snap.stored} uplink={snap.uplink}",
                err=True,
            )

    return demo.run(show)
