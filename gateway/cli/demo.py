"""`gateway demo`: the whole path on loopback with a broker outage, ending with one JSON line.

The demo is a test-harness program (simulators, a broker, a receiver): it lives in `hil/`, which the
runtime wheel leaves out (docs/decisions.md, "Layers"). This command only names it and runs it when the
harness distribution is installed; otherwise it says in one line what to install.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from gateway.config import EXAMPLE_CONFIG

#: the harness module that runs the demo, and the distribution that ships it (packaging/hil/pyproject.toml)
DEMO_MODULE = "hil.demo_cli"
HARNESS_DISTRIBUTION = "rostock-gateway-hil"
#: what an install without the harness prints (exit status 2, as for every other "cannot start")
MISSING_HARNESS = (
    f"gateway demo needs the test harness, which this install leaves out: pip install {HARNESS_DISTRIBUTION} "
    "(the Debian package ships its wheel in /opt/rostock-gateway/wheels; see docs/service.md)"
)


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
    try:
        demo = importlib.import_module(DEMO_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in {DEMO_MODULE.partition(".")[0], DEMO_MODULE}:
            raise  # the harness is there but something it needs is not: show that, not our guess
        click.echo(MISSING_HARNESS, err=True)
        sys.exit(2)
    sys.exit(demo.run(duration, rate, workdir, config_path))
