"""The `gateway` command: one entry point for the agent, technicians and backend developers."""

from __future__ import annotations

import click

from gateway.cli import buffer, keys, lorawan, modbus, serial, wire
from gateway.cli.agent import config_group, metrics_command, run_command, status_command
from gateway.cli.demo import demo_command
from gateway.cli.live import flush_command, selftest_command, watch_command
from gateway.cli.receiver import receiver_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rostock-gateway")
def main() -> None:
    """Edge gateway agent for street sensors: drivers, buffer, signed uplink, and tools around them."""


main.add_command(config_group)
main.add_command(run_command)
main.add_command(status_command)
main.add_command(metrics_command)
main.add_command(watch_command)
main.add_command(flush_command)
main.add_command(selftest_command)
main.add_command(receiver_command)
main.add_command(demo_command)
for _module in (keys, wire, buffer, serial, modbus, lorawan):
    main.add_command(_module.group)
