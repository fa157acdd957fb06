"""`gateway config check`, `gateway run`, `gateway status`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from buffer.schema import NewerSchema
from gateway.config import GatewayConfig, load_config
from gateway.control import query_status
from gateway.errors import ConfigError, GatewayError, first_leaf
from gateway.logs import configure_logging

#: exit status for an invalid configuration (systemd's RestartPreventExitStatus uses it)
EXIT_CONFIG = 2
#: exit status for state written by a newer version (after a downgrade): restarting will not help either
EXIT_NEWER_STATE = 3


@click.group(name="config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command(name="check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def config_check(file: Path) -> None:
    """Validate FILE: exit 0, or print every error with its key path and exit 2."""
    try:
        config = load_config(file)
        from gateway.sensors import build_drivers

        build_drivers(config)  # keys, profiles and codecs are checked when drivers are built
        if config.uplink.transport == "https":
            from gateway.uplink.https import bearer_token, tls_context

            tls_context(config.uplink.https)  # the TLS and token files must be usable
            bearer_token(config.uplink.https)
    except ConfigError as exc:
        click.echo(f"{file}: invalid configuration", err=True)
        for line in str(exc).splitlines():
            click.echo(f"  {line}", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(f"{file}: ok (gateway {config.gateway_id}, {len(config.sensors)} sensors)")


@config_group.command(name="schema")
def config_schema() -> None:
    """Print the JSON schema of the configuration file (for editors)."""
    click.echo(json.dumps(GatewayConfig.model_json_schema(), indent=2))


@click.command(name="run")
@click.option("--config", "config_file", required=True, type=click.Path(path_type=Path, dir_okay=False))
def run_command(config_file: Path) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    from gateway.agent import Agent  # the agent pulls in every driver: only load it when running

    try:
        config = load_config(config_file)
    except ConfigError as exc:
        click.echo(f"{config_file}: invalid configuration\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)
    configure_logging(config.logging.level, config.logging.format)
    try:
        asyncio.run(Agent(config).run())
    except Exception as exc:
        error = first_leaf(exc)
        if isinstance(error, ConfigError):
            click.echo(f"cannot start: {error}", err=True)
            sys.exit(EXIT_CONFIG)
        if isinstance(error, NewerSchema):
            click.echo(f"cannot start: {error}", err=True)
            sys.exit(EXIT_NEWER_STATE)
        if isinstance(error, GatewayError):
            click.echo(f"agent failed: {error}", err=True)
            sys.exit(1)
        raise


@click.command(name="status")
@click.option("--config", "config_file", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the raw JSON status")
def status_command(config_file: Path, as_json: bool) -> None:
    """Show what the running agent is doing (asks its control socket)."""
    config = load_config(config_file)
    try:
        status = asyncio.run(query_status(config.state_dir / "control.sock"))
    except GatewayError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(status))
        return
    from gateway.cli.views import render_status

    render_status(status)


@click.command(name="metrics")
@click.option("--config", "config_file", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="write here atomically (node_exporter's textfile directory) instead of printing",
)
def metrics_command(config_file: Path, out: Path | None) -> None:
    """The running agent's counters in Prometheus text format (gateway_agent_up 0 when it is down)."""
    from gateway.metrics import render

    config = load_config(config_file)
    try:
        status = asyncio.run(query_status(config.state_dir / "control.sock"))
        text = render(status) + "gateway_agent_up 1\n"
    except GatewayError as exc:
        click.echo(str(exc), err=True)
        if out is None:
            sys.exit(1)
        text = "gateway_agent_up 0\n"  # the file still says so: a stale file would look healthy
    if out is None:
        click.echo(text, nl=False)
        return
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(text)
    temporary.replace(out)
