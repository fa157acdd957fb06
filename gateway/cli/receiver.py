"""`gateway receiver`: the reference receiver for backend developers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
from pathlib import Path

import click

from gateway.errors import UplinkError
from gateway.logs import configure_logging


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


@click.command(name="receiver")
@click.option("--broker", help="HOST:PORT of the MQTT broker to subscribe at")
@click.option("--listen", help="HOST:PORT to accept batches over HTTPS (POST /gateways/<id>/batches)")
@click.option(
    "--tls-cert", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="PEM certificate chain"
)
@click.option(
    "--tls-key", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="PEM private key"
)
@click.option("--keys", "keys_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--db", "db_file", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--topic", default="gateways/+/batches", show_default=True)
@click.option("--client-id", default="gateway-receiver", show_default=True)
@click.option(
    "--stats-file", type=click.Path(path_type=Path, dir_okay=False), help="rewrite JSON statistics here"
)
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def receiver_command(
    broker: str | None,
    listen: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    keys_dir: Path,
    db_file: Path,
    topic: str,
    client_id: str,
    stats_file: Path | None,
    log_level: str,
) -> None:
    """Take batches from an MQTT broker and/or over HTTPS, verify every one, store each reading exactly
    once; prints statistics as JSON on exit.

    Without --tls-cert the endpoint speaks plain HTTP, for a TLS-terminating proxy in front of it.
    """
    from gateway.receiver import BatchEndpoint, Receiver, ReceiverDatabase

    if broker is None and listen is None:
        raise click.UsageError("give --broker, --listen or both")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    tls = None
    if tls_cert is not None and tls_key is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(tls_cert, tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise click.BadParameter(f"cannot load the certificate and key: {exc}") from exc
    mqtt_host, mqtt_port = _host_port(broker) if broker is not None else ("", 0)
    endpoint_at = _host_port(listen) if listen is not None else None
    configure_logging(log_level)
    database = ReceiverDatabase(db_file)
    receiver = Receiver(
        host=mqtt_host, port=mqtt_port, keys_dir=keys_dir, database=database, topic=topic, client_id=client_id
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with asyncio.TaskGroup() as tasks:
            running = []
            if broker is not None:
                running.append(tasks.create_task(receiver.run()))
            if endpoint_at is not None:
                endpoint = BatchEndpoint(receiver, host=endpoint_at[0], port=endpoint_at[1], tls=tls)
                running.append(tasks.create_task(endpoint.run()))
            if stats_file is not None:
                running.append(tasks.create_task(receiver.write_statistics(stats_file)))
            await stop.wait()
            for task in running:
                task.cancel()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    except* UplinkError as group:  # the endpoint's address is taken or not ours
        database.close()
        raise click.ClickException(str(group.exceptions[0])) from None
    database.close()
    final = receiver.statistics().__dict__
    if stats_file is not None:
        from gateway.receiver.service import write_json_atomically

        write_json_atomically(stats_file, final)
    click.echo(json.dumps(final))
