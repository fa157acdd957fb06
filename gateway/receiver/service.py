"""The receiver process: a store, the core, the committer and its transports under one TaskGroup."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.public_key_files import load_public_pem
from gateway.receiver.core import CoreStatistics, ReceiverCore
from gateway.receiver.intake import Committer
from gateway.receiver.mqtt import BatchSubscriber
from gateway.receiver.store import RegisteredKey
from gateway.receiver.verdict import valid_gateway_id
from gateway.wire import kid_for
from kernel.errors import ConfigError

if TYPE_CHECKING:  # aiohttp is imported only by a receiver that serves HTTP (--listen)
    from gateway.receiver.http import BatchEndpoint


@dataclass(frozen=True)
class ReceiverStatistics:
    """What `gateway receiver` prints on exit and rewrites into --stats-file."""

    core: CoreStatistics
    #: subscribed at the MQTT broker
    connected: bool
    #: the HTTPS endpoint accepts batches
    listening: bool
    #: MQTT messages acknowledged (each after its commit)
    acknowledged: int
    #: transactions committed by the committer (each holding one or more batches)
    groups: int

    def as_dict(self) -> dict[str, object]:
        """Flat JSON-ready counters."""
        flat: dict[str, object] = asdict(self.core)
        flat.update(connected=self.connected, listening=self.listening)
        flat.update(acknowledged=self.acknowledged, groups=self.groups)
        return flat


class Receiver:
    """Runs the transports given until cancelled."""

    def __init__(
        self,
        core: ReceiverCore,
        committer: Committer,
        subscriber: BatchSubscriber | None = None,
        endpoint: BatchEndpoint | None = None,
    ) -> None:
        self.core = core
        self.committer = committer
        self.subscriber = subscriber
        self.endpoint = endpoint

    async def run(self, stats_file: Path | None = None) -> None:
        """The committer, the transports and the statistics file, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.committer.run())
            if self.subscriber is not None:
                tasks.create_task(self.subscriber.run())
            if self.endpoint is not None:
                tasks.create_task(self.endpoint.run())
            if stats_file is not None:
                tasks.create_task(self.write_statistics(stats_file))

    def statistics(self) -> ReceiverStatistics:
        """Counters so far."""
        return ReceiverStatistics(
            core=self.core.statistics(),
            connected=self.subscriber is not None and self.subscriber.connected,
            listening=self.endpoint is not None and self.endpoint.listening,
            acknowledged=0 if self.subscriber is None else self.subscriber.acknowledged,
            groups=self.committer.groups,
        )

    async def write_statistics(self, path: Path, every_s: float = 0.5) -> None:
        """Rewrite a JSON statistics file atomically, forever (the demo and tests read it)."""
        while True:
            write_json_atomically(path, self.statistics().as_dict())
            await asyncio.sleep(every_s)


def import_key_dir(core: ReceiverCore, directory: Path, at_ms: int) -> int:
    """Register the keys of a --keys directory (`<gateway>.pem` or `<gateway>/<name>.pem`; a
    `.retired.pem` file is skipped) in the registry; returns how many quarantined batches that released."""
    released = 0
    for gateway_id, pem in _key_files(directory):
        if not valid_gateway_id(gateway_id):
            raise ConfigError(f"{pem}: {gateway_id!r} is not a gateway id (1 to 64 of A-Z a-z 0-9 . _ -)")
        public = load_public_pem(pem)
        raw = public.public_bytes_raw()
        key = RegisteredKey(kid_for(public), gateway_id, raw, at_ms, "import")
        try:
            released += core.enrol(key)
        except ConfigError as exc:  # another gateway's key, or a registered key has its 4-byte hint
            raise ConfigError(f"{pem}: {exc}") from None
    return released


def _key_files(directory: Path) -> list[tuple[str, Path]]:
    found = [(p.name.removesuffix(".pem"), p) for p in sorted(directory.glob("*.pem"))]
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        found += [(sub.name, p) for p in sorted(sub.glob("*.pem"))]
    return [(g, p) for g, p in found if not p.name.endswith(".retired.pem")]


def write_json_atomically(path: Path, value: object) -> None:
    """Write JSON to `path` via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
