"""`gateway keys init|show|rotate`: the gateway's Ed25519 signing key pair on disk."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.signing_key import (
    PRIVATE_NAME,
    describe,
    generate_keypair,
    load_public_key,
    public_pem,
    rotate_keypair,
)
from gateway.wire import kid_for
from kernel.errors import ConfigError

_DIR = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="key directory (gateway.key.pem, gateway.pub.pem, previous/)",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="print one JSON object")


@click.group(name="keys")
def group() -> None:
    """Create, show and rotate the gateway's signing key (docs/wire-format.md, "Keys")."""


@group.command("init")
@_DIR
@_JSON
def init_command(directory: Path, as_json: bool) -> None:
    """Create a key pair; refuses to overwrite an existing one. Prints the public key and kid."""
    try:
        private_path, public_path = generate_keypair(directory)
        public = load_public_key(public_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _report(
        as_json,
        {
            "private_key": str(private_path),
            "public_key": str(public_path),
            "kid": kid_for(public).hex(),
            "public_pem": public_pem(public),
        },
    )


@group.command("show")
@_DIR
@_JSON
def show_command(directory: Path, as_json: bool) -> None:
    """Print the current public key, its kid and the kids of rotated-out keys."""
    try:
        info = describe(directory)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _report(
        as_json,
        {
            "private_key": str(directory / PRIVATE_NAME),
            "public_key": str(info.public_path),
            "kid": info.kid.hex(),
            "previous_kids": [kid.hex() for kid in info.previous_kids],
            "public_pem": info.public_pem,
        },
    )


@group.command("rotate")
@_DIR
@_JSON
def rotate_command(directory: Path, as_json: bool) -> None:
    """Replace the key pair; the old one moves to previous/. After the agent restarts, its next batch is
    signed by the old key and announces the new one, which the receiver then enrols by itself.

    Run as root, the new files keep the owner and modes of the old ones (the service user reads them)."""
    try:
        _, public_path, old_kid = rotate_keypair(directory)
        public = load_public_key(public_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _report(
        as_json,
        {
            "public_key": str(public_path),
            "kid": kid_for(public).hex(),
            "previous_kid": old_kid.hex(),
            "public_pem": public_pem(public),
        },
    )


def _report(as_json: bool, fields: dict[str, object]) -> None:
    if as_json:
        click.echo(json.dumps(fields))
        return
    pem = str(fields.pop("public_pem"))
    for name, value in fields.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        click.echo(f"{name}: {shown if shown != '' else '-'}")
    click.echo(pem, nl=False)
