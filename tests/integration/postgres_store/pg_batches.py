"""Signed batches for the PostgreSQL store's tests: hil.fleet's gateways, with any contents."""

from __future__ import annotations

from collections.abc import Sequence

from gateway import wire
from gateway.receiver.store import VerifiedBatch
from hil.fleet import SimulatedGateway


def keyring_of(*gateways: SimulatedGateway) -> wire.Keyring:
    """A keyring trusting these gateways' current keys."""
    keyring = wire.Keyring()
    for gateway in gateways:
        keyring.add(gateway.gateway_id, gateway.key.public_key())
    return keyring


def verified(gateway: SimulatedGateway, blob: bytes, received_ms: int = 1) -> VerifiedBatch:
    """`blob` verified as the receiver core does before it reaches a store."""
    return VerifiedBatch(wire.verify_and_decode(blob, keyring_of(gateway)), blob, received_ms)


def signed(
    gateway: SimulatedGateway,
    seq: int,
    *,
    readings: wire.ReadingColumns | None = None,
    windows: wire.WindowColumns | None = None,
    gaps: Sequence[wire.Gap] = (),
    events: Sequence[wire.Event] = (),
) -> bytes:
    """Batch `seq` of `gateway` with the given contents (its series are sensor-0, sensor-1, ...)."""
    series = [wire.SeriesInfo(f"sensor-{i}", "air_temperature", "Cel") for i in range(gateway.series)]
    body = wire.encode_batch(
        gateway_id=gateway.gateway_id, seq=seq, created_ms=1_767_225_600_000, series=series,
        readings=readings if readings is not None else wire.ReadingColumns.empty(), windows=windows,
        gaps=gaps, events=events, epoch=gateway.epoch,
    )  # fmt: skip
    return wire.sign(body, gateway.key, gateway.kid)
