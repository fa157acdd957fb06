"""`gateway receiver`: the reference receiver for backend developers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path

import click

from gateway.logs import configure_logging


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


@click.command(name="receiver")
@click.option("--broker", required=True, help="HOST:PORT of the MQTT broker")
@click.option("--keys", "keys_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--db", "db_file", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--topic", default="gateways/+/batches", show_default=True)
@click.option("--client-id", default="gateway-receiver", show_default=True)
@click.option(
    "--stats-file", type=click.Path(path_type=Path, dir_okay=False), help="rewrite JSON statistics here"
)
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def receiver_command(
    broker: str,
    keys_dir: Path,
    db_file: Path,
    topic: str,
    client_id: str,
    stats_file: Path | None,
    log_level: str,
) -> None:
    """Subscribe, verify every batch, store each reading exactly once; prints statistics as JSON on exit."""
    from gateway.receiver import Receiver, ReceiverDatabase

    host, port = _host_port(broker)
    configure_logging(log_level)
    database = ReceiverDatabase(db_file)
    receiver = Receiver(
        host=host, port=port, keys_dir=keys_dir, database=database, topic=topic, client_id=client_id
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with asyncio.TaskGroup() as tasks:
            running = [tasks.create_task(receiver.run())]
            if stats_file is not None:
                running.append(tasks.create_task(receiver.write_statistics(stats_file)))
            await stop.wait()
            for task in running:
                task.cancel()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    database.close()
    final = receiver.statistics().__dict__
    if stats_file is not None:
        from gateway.receiver.service import write_json_atomically

        write_json_atomically(stats_file, final)
    click.echo(json.dumps(final))
