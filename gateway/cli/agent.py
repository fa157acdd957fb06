"""`gateway config check`, `gateway run`, `gateway status`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from buffer.schema import NewerSchema
from gateway.cli.configfile import EXIT_CONFIG, chosen, config_option, load_or_exit
from gateway.config import GatewayConfig, load_config
from gateway.control import query_status
from gateway.logs import configure_logging
from kernel.errors import ConfigError, GatewayError, first_leaf

#: exit status for state written by a newer version (after a downgrade): restarting will not help either
EXIT_NEWER_STATE = 3


@click.group(name="config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command(name="check")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='one JSON document: {"file", "ok", "errors": [...], "warnings": [...]}',
)
def config_check(file: Path | None, as_json: bool) -> None:
    """Check FILE (default: $GATEWAY_CONFIG or /etc/gateway/gateway.toml): exit 0, or every error and exit 2."""
    from gateway.configcheck import advice, check_file

    configure_logging("warning", stream=sys.stderr)  # drivers' advice must not mix into --json
    path = chosen(file)
    if file is None and not path.exists():
        click.echo(f"{path} does not exist: give FILE or set GATEWAY_CONFIG", err=True)
        sys.exit(EXIT_CONFIG)
    config, problems = check_file(path)
    warnings = [] if config is None else advice(config)
    if as_json:
        errors = [{"where": p.where, "message": p.message} for p in problems]
        cautions = [{"where": w.where, "message": w.message} for w in warnings]
        click.echo(
            json.dumps({"file": str(path), "ok": not problems, "errors": errors, "warnings": cautions})
        )
    elif problems:
        click.echo(f"{path}: {len(problems)} error{'s' if len(problems) > 1 else ''}", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
    elif config is not None:
        click.echo(f"{path}: ok (gateway {config.gateway_id}, {len(config.sensors)} sensors)")
        for warning in warnings:
            click.echo(f"  warning: {warning}", err=True)
    if problems:
        sys.exit(EXIT_CONFIG)


@config_group.command(name="schema")
def config_schema() -> None:
    """Print the JSON schema of the configuration file (for editors)."""
    click.echo(json.dumps(GatewayConfig.model_json_schema(), indent=2))


@click.command(name="run")
@config_option
def run_command(config_file: Path | None) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    from gateway.agent import Agent  # the agent pulls in every driver: only load it when running

    path = chosen(config_file)
    try:
        config = load_config(path)
    except ConfigError as exc:
        click.echo(f"{path}: invalid configuration\n{exc}", err=True)
        sys.exit(EXIT_CONFIG)
    configure_logging(config.logging.level, config.logging.format)
    try:
        asyncio.run(Agent(config, path.resolve()).run())
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
@config_option
@click.option("--json", "as_json", is_flag=True, help="print the raw JSON status")
def status_command(config_file: Path | None, as_json: bool) -> None:
    """Show what the running agent is doing: sensors, uplink, buffer, clock (asks its control socket)."""
    config = load_or_exit(config_file)
    try:
        status = asyncio.run(query_status(config.state_dir / "control.sock"))
    except GatewayError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(status))
        return
    from gateway.cli.views import render_status

    render_status(status)


@click.command(name="metrics")
@config_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="write here atomically (node_exporter's textfile directory) instead of printing",
)
def metrics_command(config_file: Path | None, out: Path | None) -> None:
    """The running agent's counters in Prometheus text format (gateway_agent_up 0 when it is down)."""
    from gateway.metrics import render, unreachable

    try:
        config = load_or_exit(config_file)
        status = asyncio.run(query_status(config.state_dir / "control.sock"))
        text = render(status) + "gateway_agent_up 1\n"
        failed: int | None = None
    except SystemExit as exc:  # the configuration: said on stderr already
        text, failed = unreachable("config"), int(exc.code or 1)
    except GatewayError as exc:
        click.echo(f"error: {exc}", err=True)
        text, failed = unreachable("agent"), 1
    if out is None:
        if failed is None:
            click.echo(text, nl=False)
        sys.exit(failed or 0)
    # the file always says what is known now: a stale file would look healthy
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(text)
    temporary.replace(out)
    # an agent that is down is what the file reports (the timer succeeds); a broken config is not
    sys.exit(failed if failed == EXIT_CONFIG else 0)
