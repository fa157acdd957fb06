"""Which configuration file a command uses: `--config`, else `GATEWAY_CONFIG`, else the installed one.

A technician on an installed gateway types `gateway status`, not the path the package put the file at.
A file that cannot be read or is invalid is one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.config import GatewayConfig, load_config
from kernel.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

#: where the Debian package and the README put the agent's configuration
INSTALLED_CONFIG = Path("/etc/gateway/gateway.toml")
CONFIG_ENV = "GATEWAY_CONFIG"
#: exit status for an invalid configuration (systemd's RestartPreventExitStatus uses it)
EXIT_CONFIG = 2


def default_config() -> Path:
    """GATEWAY_CONFIG when set, else /etc/gateway/gateway.toml."""
    return Path(os.environ.get(CONFIG_ENV) or INSTALLED_CONFIG)


def config_option(command: F) -> F:
    """`--config FILE` defaulting to GATEWAY_CONFIG or /etc/gateway/gateway.toml."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help=f"the agent's configuration [default: ${CONFIG_ENV} or {INSTALLED_CONFIG}]",
    )(command)


def chosen(config_file: Path | None) -> Path:
    """The file a command works with."""
    return config_file if config_file is not None else default_config()


def load_or_exit(config_file: Path | None) -> GatewayConfig:
    """The validated configuration, or a short message on stderr and exit 2."""
    path = chosen(config_file)
    try:
        return load_config(path)
    except ConfigError as exc:
        first, *rest = str(exc).splitlines() or [""]
        more = f" (and {len(rest)} more; see: gateway config check {path})" if rest else ""
        hint = ""
        if config_file is None and not path.exists():
            hint = f"; give --config FILE or set {CONFIG_ENV}"
        message = first if first.startswith(str(path)) else f"{path}: {first}"
        click.echo(f"error: {message}{more}{hint}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
