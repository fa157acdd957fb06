"""`gateway demo`: the whole path on loopback with a broker outage, ending with one JSON line."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.config import EXAMPLE_CONFIG
from kernel.errors import GatewayError

if TYPE_CHECKING:
    from gateway.demo import Demo, Snapshot


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


@click.command(name="demo")
@click.option("--duration", default=90.0, show_default=True, type=click.FloatRange(min=15), help="seconds")
@click.option(
    "--rate", default=2.0, show_default=True, type=click.FloatRange(min=0.1, max=50), help="sentences/s"
)
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), help="keep files here")
@click.option(
    "--config", "config_path", default=EXAMPLE_CONFIG, type=click.Path(path_type=Path, dir_okay=False)
)
def demo_command(duration: float, rate: float, workdir: Path | None, config_path: Path) -> None:
    """Broker, simulators, receiver and agent on loopback; the broker is down for the middle third."""
    from gateway.demo import Demo, default_workdir, is_tty

    scratch = workdir is None  # a folder the demo made is removed again after a passing run
    workdir = workdir or default_workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(duration, workdir, rate, config_path)
    click.echo(f"demo files in {workdir}", err=True)
    try:
        result = _run(demo, is_tty())
    except GatewayError as exc:
        click.echo(f"demo failed: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(result))
    passed = result["lost"] == 0 and result["produced"] > 0
    if result["produced"] == 0:
        click.echo("demo failed: the simulators produced nothing (see the logs in the demo folder)", err=True)
    if passed and scratch:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not passed:
        click.echo(f"demo files kept in {workdir}", err=True)
    sys.exit(0 if passed else 1)


def _run(demo: Demo, tty: bool) -> dict[str, int]:
    from gateway.demo import Snapshot

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
