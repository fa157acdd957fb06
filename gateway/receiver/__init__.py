"""The reference receiver: verify every batch, quarantine what cannot be verified yet, store each
batch once per (gateway id, epoch, seq), acknowledge only after the commit."""

from typing import TYPE_CHECKING

from gateway.receiver.core import Arrival, CoreStatistics, ReceiverCore
from gateway.receiver.intake import Committer
from gateway.receiver.mqtt import BatchSubscriber, BrokerSettings
from gateway.receiver.service import Receiver, ReceiverStatistics, import_key_dir
from gateway.receiver.sqlite import SqliteStore
from gateway.receiver.store import (
    Outcome,
    QuarantinedBatch,
    QuarantineEntry,
    QuarantineReason,
    ReceiverStore,
    RegisteredKey,
    VerifiedBatch,
)
from gateway.receiver.verdict import HTTP_STATUS, Verdict

if TYPE_CHECKING:
    from gateway.receiver.http import BatchEndpoint


def __getattr__(name: str) -> object:
    """BatchEndpoint on first use: aiohttp costs an MQTT-only receiver 0.1 s of CPU at start."""
    if name == "BatchEndpoint":
        from gateway.receiver.http import BatchEndpoint

        return BatchEndpoint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HTTP_STATUS",
    "Arrival",
    "BatchEndpoint",
    "BatchSubscriber",
    "BrokerSettings",
    "Committer",
    "CoreStatistics",
    "Outcome",
    "QuarantineEntry",
    "QuarantineReason",
    "QuarantinedBatch",
    "Receiver",
    "ReceiverCore",
    "ReceiverStatistics",
    "ReceiverStore",
    "RegisteredKey",
    "SqliteStore",
    "Verdict",
    "VerifiedBatch",
    "import_key_dir",
]
