"""`gateway receiver keys add|list|revoke` and `gateway receiver quarantine list|retry`.

Both work on the receiver's database directly (a running receiver re-reads the key registry within
KEY_REFRESH_MS); enrolling a key re-verifies that gateway's quarantined batches at once.
"""

from __future__ import annotations

import datetime
import importlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from gateway.public_key_files import load_public_pem
from gateway.receiver.core import ReceiverCore
from gateway.receiver.store import ReceiverStore, RegisteredKey
from gateway.receiver.verdict import valid_gateway_id
from gateway.wire import KID_HINT_LENGTH, KID_LENGTH, kid_for
from kernel.errors import ConfigError, GatewayError
from kernel.wallclock import now_ms

DEFAULT_DB = "receiver.db"
_DB = click.option("--db", "db", help="a SQLite file (default receiver.db) or postgresql://...")
_JSON = click.option("--json", "as_json", is_flag=True, help="one JSON object per line")


def open_store(db: str | None) -> ReceiverStore:
    """The store a --db value names: postgresql://... (psycopg 3) or a SQLite file."""
    target = db or DEFAULT_DB
    if target.startswith(("postgresql://", "postgres://")):
        try:  # imported by name: psycopg is needed only here
            postgres = importlib.import_module("gateway.receiver.postgres")
        except ImportError as exc:
            raise click.ClickException(f"the PostgreSQL store is not available: {exc}") from None
        store: ReceiverStore = postgres.PostgresStore(target)
        return store
    from gateway.receiver.sqlite import SqliteStore

    return SqliteStore(Path(target))


@contextmanager
def _store(db: str | None) -> Iterator[ReceiverStore]:
    try:
        store = open_store(db)
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield store
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds")


@click.group(name="keys")
def keys_group() -> None:
    """The key registry: which public key speaks for which gateway."""


@keys_group.command("add")
@click.argument("gateway_id")
@click.argument("public_pem", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_DB
def keys_add(gateway_id: str, public_pem: Path, db: str | None) -> None:
    """Enrol PUBLIC_PEM (`gateway keys show` on the gateway) for GATEWAY_ID; re-verifies its quarantine."""
    if not valid_gateway_id(gateway_id):
        raise click.BadParameter(f"{gateway_id!r}: a gateway id is 1 to 64 of A-Z a-z 0-9 . _ -")
    try:
        public = load_public_pem(public_pem)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    key = RegisteredKey(kid_for(public), gateway_id, public.public_bytes_raw(), now_ms(), "cli")
    with _store(db) as store:
        try:
            released = ReceiverCore(store).enrol(key)
        except ConfigError as exc:  # the key is another gateway's, or another key has its 4-byte hint
            raise click.ClickException(str(exc)) from None
    click.echo(f"enrolled kid {key.kid.hex()} for {gateway_id}; released {released} quarantined batches")


@keys_group.command("list")
@click.option("--gateway", "gateway_id", help="only this gateway's keys")
@_DB
@_JSON
def keys_list(gateway_id: str | None, db: str | None, as_json: bool) -> None:
    """Registered keys, revoked ones included."""
    with _store(db) as store:
        keys = store.keys(gateway_id)
    for k in keys:
        row = {
            "gateway_id": k.gateway_id, "kid": k.kid.hex(), "source": k.source,
            "added": _when(k.added_ms), "revoked": _when(k.revoked_ms),
        }  # fmt: skip
        click.echo(json.dumps(row) if as_json else "  ".join(str(v) for v in row.values()))


@keys_group.command("revoke")
@click.argument("kid_hex")
@_DB
def keys_revoke(kid_hex: str, db: str | None) -> None:
    """Revoke a key, named by its kid (16 hex digits) or by the 8 a compact envelope carries (as
    `quarantine list` shows them): later batches signed with it go to quarantine with reason `revoked`."""
    try:
        kid = bytes.fromhex(kid_hex)
    except ValueError:
        raise click.BadParameter(f"{kid_hex!r} is not a hex kid") from None
    if len(kid) not in (KID_LENGTH, KID_HINT_LENGTH):
        raise click.BadParameter(f"{kid_hex!r}: a kid is 16 hex digits, its hint the first 8")
    with _store(db) as store:
        found = store.key(kid)
        if found is None:
            raise click.ClickException(f"no registered key with kid {kid_hex}")
        store.revoke_key(found.kid, now_ms())
    click.echo(f"revoked kid {found.kid.hex()} of {found.gateway_id}")


@click.group(name="quarantine")
def quarantine_group() -> None:
    """Batches kept aside: not verifiable yet (unknown key, revoked, new version) or rejected."""


@quarantine_group.command("list")
@click.option("--gateway", "gateway_id", help="only batches that arrived for this gateway")
@click.option("--limit", default=1000, show_default=True)
@_DB
@_JSON
def quarantine_list(gateway_id: str | None, limit: int, db: str | None, as_json: bool) -> None:
    """Quarantined batches, oldest first."""
    with _store(db) as store:
        rows = store.quarantined(gateway_id=gateway_id, limit=limit)
    for r in rows:
        row = {
            "id": r.id, "received": _when(r.received_ms), "reason": r.reason.value,
            "retryable": r.reason.retryable, "gateway_id": r.gateway_id,
            "kid": None if r.kid is None else r.kid.hex(), "bytes": r.size, "detail": r.detail,
        }  # fmt: skip
        click.echo(json.dumps(row) if as_json else "  ".join(str(v) for v in row.values()))


@quarantine_group.command("retry")
@click.option("--gateway", "gateway_id", help="only batches that arrived for this gateway")
@_DB
def quarantine_retry(gateway_id: str | None, db: str | None) -> None:
    """Re-verify the retryable quarantine now; stores and releases what verifies."""
    with _store(db) as store:
        released = ReceiverCore(store).retry(gateway_id, now_ms())
        left = len(store.quarantined(gateway_id=gateway_id, retryable_only=True))
    click.echo(f"released {released} batches; {left} still quarantined")
