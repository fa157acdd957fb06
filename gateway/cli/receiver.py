"""`gateway receiver`: the reference receiver, its quarantine and its key registry."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path

import click

from gateway.cli.receiver_admin import keys_group, open_store, quarantine_group
from gateway.cli.receiver_tls import broker_tls, endpoint_tls, read_password
from gateway.logs import configure_logging
from kernel.errors import ConfigError, StorageError, UplinkError, first_leaf


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


@click.group(name="receiver", invoke_without_command=True)
@click.option("--broker", help="HOST:PORT of the MQTT broker to subscribe at")
@click.option("--listen", help="HOST:PORT to accept batches over HTTPS (POST /gateways/<id>/batches)")
@click.option("--tls-cert", type=_FILE, help="PEM certificate chain of the HTTPS endpoint")
@click.option("--tls-key", type=_FILE, help="PEM private key of the HTTPS endpoint")
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="import the public keys of this directory into the registry at start",
)
@click.option("--db", "db", help="database: a SQLite file (default receiver.db) or postgresql://...")
@click.option("--topic", default="gateways/+/batches", show_default=True)
@click.option("--client-id", default="gateway-receiver", show_default=True, help="stable MQTT client id")
@click.option("--share-group", help="subscribe through $share/NAME/<topic> (several receivers, one group)")
@click.option("--mqtt-username", help="MQTT user name")
@click.option("--mqtt-password-file", type=_FILE, help="file holding the MQTT password")
@click.option("--mqtt-ca", type=_FILE, help="connect to the broker over TLS, trusting this CA (PEM)")
@click.option("--mqtt-cert", type=_FILE, help="client certificate (PEM) for the broker")
@click.option("--mqtt-key", type=_FILE, help="the client certificate's private key (PEM)")
@click.option(
    "--stats-file", type=click.Path(path_type=Path, dir_okay=False), help="rewrite JSON statistics here"
)
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def receiver_command(ctx: click.Context, /, **options: object) -> None:
    """Take batches from an MQTT broker and/or over HTTPS, verify every one, store each batch once;
    prints statistics as JSON on exit. Subcommands manage the quarantine and the key registry.

    Without --tls-cert the endpoint speaks plain HTTP, for a TLS-terminating proxy in front of it.
    """
    if ctx.invoked_subcommand is not None:
        return
    _serve(**options)  # type: ignore[arg-type]


receiver_command.add_command(keys_group)
receiver_command.add_command(quarantine_group)


def _serve(
    broker: str | None, listen: str | None, tls_cert: Path | None, tls_key: Path | None,
    keys_dir: Path | None, db: str | None, topic: str, client_id: str, share_group: str | None,
    mqtt_username: str | None, mqtt_password_file: Path | None, mqtt_ca: Path | None,
    mqtt_cert: Path | None, mqtt_key: Path | None, stats_file: Path | None, log_level: str,
) -> None:  # fmt: skip
    from gateway.receiver import (
        BatchSubscriber,
        BrokerSettings,
        Committer,
        Receiver,
        ReceiverCore,
        SqliteStore,
        import_key_dir,
    )
    from gateway.receiver.service import write_json_atomically
    from kernel.wallclock import now_ms

    if broker is None and listen is None:
        raise click.UsageError("give --broker, --listen or both")
    tls = endpoint_tls(tls_cert, tls_key)
    settings = None
    if broker is not None:
        host, port = _host_port(broker)
        settings = BrokerSettings(
            host, port, client_id=client_id, topic=topic, share_group=share_group, username=mqtt_username,
            password=read_password(mqtt_password_file), tls=broker_tls(mqtt_ca, mqtt_cert, mqtt_key),
        )  # fmt: skip
    endpoint_at = _host_port(listen) if listen is not None else None
    configure_logging(log_level)
    store = open_store(db)
    core = ReceiverCore(store)
    try:
        if keys_dir is not None:
            import_key_dir(core, keys_dir, now_ms())
    except (ConfigError, StorageError) as exc:
        store.close()
        raise click.ClickException(str(exc)) from None
    committer = Committer(core, overlap=not isinstance(store, SqliteStore))
    endpoint = None
    if endpoint_at is not None:
        from gateway.receiver.http import BatchEndpoint  # aiohttp only for a receiver that serves HTTP

        endpoint = BatchEndpoint(committer, host=endpoint_at[0], port=endpoint_at[1], clock=now_ms, tls=tls)
    receiver = Receiver(
        core,
        committer,
        subscriber=None if settings is None else BatchSubscriber(committer, settings, clock=now_ms),
        endpoint=endpoint,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(receiver.run(stats_file))
            await stop.wait()
            running.cancel()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    except* UplinkError as group:  # the endpoint's address is taken or not ours
        raise click.ClickException(str(first_leaf(group))) from None
    finally:
        store.close()
    final = receiver.statistics().as_dict()
    if stats_file is not None:
        write_json_atomically(stats_file, final)
    click.echo(json.dumps(final))
