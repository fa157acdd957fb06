"""A simulated fleet of gateways for receiver tests and benchmarks: each gateway has its own key and
epoch and signs batches of `series` series x `per_series` readings (5 s slices at 1 Hz by default,
the issue's 20 x 5 = 100 readings per batch)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import wire

#: 2026-01-01T00:00:00Z: the simulated readings start here unless told otherwise
START_MS = 1_767_225_600_000


@dataclass
class SimulatedGateway:
    """One gateway: an id, a signing key, an epoch (a buffer database) and its series."""

    gateway_id: str
    series_count: int = 20
    per_series: int = 5
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    epoch: bytes = field(default_factory=lambda: os.urandom(wire.EPOCH_LENGTH))

    @property
    def series(self) -> list[wire.SeriesInfo]:
        """sensor s-<i>, quantity air_temperature, unit Cel, 0.01 resolution."""
        return [
            wire.SeriesInfo(f"s-{i}", "air_temperature", "Cel", resolution=0.01)
            for i in range(self.series_count)
        ]

    def readings(self, seq: int, start_ms: int = START_MS, offset: float = 0.0) -> wire.ReadingColumns:
        """The readings of batch `seq`: every series at 1 Hz over the batch's slice of `per_series` s."""
        n = self.per_series
        series = np.repeat(np.arange(self.series_count, dtype=np.int32), n)
        ts = start_ms + seq * n * 1000 + np.tile(np.arange(n, dtype=np.int64) * 1000, self.series_count)
        value = np.round(10.0 + series * 0.5 + np.sin(ts / 60_000.0) + offset, 2)
        return wire.ReadingColumns(series, ts, value, np.zeros(len(ts), dtype=np.uint16))

    def batch(
        self,
        seq: int,
        *,
        start_ms: int = START_MS,
        offset: float = 0.0,
        readings: wire.ReadingColumns | None = None,
        windows: wire.WindowColumns | None = None,
        gaps: Sequence[wire.Gap] = (),
        events: Sequence[wire.Event] = (),
    ) -> bytes:
        """A signed batch; `offset` shifts the values (other content under the same identity)."""
        body = wire.encode_batch(
            gateway_id=self.gateway_id,
            seq=seq,
            created_ms=start_ms + (seq + 1) * self.per_series * 1000,
            series=self.series,
            readings=self.readings(seq, start_ms, offset) if readings is None else readings,
            windows=windows,
            gaps=gaps,
            events=events,
            epoch=self.epoch,
        )
        return wire.sign(body, self.key, wire.kid_for(self.key.public_key()))

    def keyring(self, into: wire.Keyring | None = None) -> wire.Keyring:
        """A keyring that trusts this gateway (added to `into` when given)."""
        keyring = into if into is not None else wire.Keyring()
        keyring.add(self.gateway_id, self.key.public_key())
        return keyring


def fleet(
    count: int, prefix: str = "gw-", *, series_count: int = 20, per_series: int = 5
) -> list[SimulatedGateway]:
    """`count` gateways gw-000, gw-001, ..."""
    width = len(str(count - 1))
    return [SimulatedGateway(f"{prefix}{i:0{width}d}", series_count, per_series) for i in range(count)]
