"""The `gateway` command: one entry point for the agent, technicians and backend developers.

Subcommands are imported when invoked, not at start: `gateway receiver` used to import the agent,
the drivers and every other subcommand's dependencies first, 0.8 s of CPU per start (measured with
`python -X importtime`), which a receiver restarted under systemd or in a kill loop pays each time.
"""

from __future__ import annotations

import importlib

import click

#: command name -> "module:attribute" of the click command
SUBCOMMANDS = {
    "buffer": "gateway.cli.buffer:group",
    "config": "gateway.cli.agent:config_group",
    "demo": "gateway.cli.demo:demo_command",
    "flush": "gateway.cli.live:flush_command",
    "keys": "gateway.cli.keys:group",
    "lorawan": "gateway.cli.lorawan:group",
    "metrics": "gateway.cli.agent:metrics_command",
    "modbus": "gateway.cli.modbus:group",
    "receiver": "gateway.cli.receiver:receiver_command",
    "run": "gateway.cli.agent:run_command",
    "selftest": "gateway.cli.live:selftest_command",
    "serial": "gateway.cli.serial:group",
    "status": "gateway.cli.agent:status_command",
    "watch": "gateway.cli.live:watch_command",
    "wire": "gateway.cli.wire:group",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported by name when used (click's documented lazy-loading
    pattern); `--help` imports them all to show their summaries."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = SUBCOMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{SUBCOMMANDS[cmd_name]} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rostock-gateway")
def main() -> None:
    """Edge gateway agent for street sensors: drivers, buffer, signed uplink, and tools around them."""
