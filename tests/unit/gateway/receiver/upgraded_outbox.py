"""An upgraded agent's outbox, as the receiver's upgrade tests need it: a batch the old agent sealed,
then what the new agent's batcher seals behind it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import Store, StoreOptions
from gateway import wire
from gateway.batcher import Batcher
from gateway.sealing import Due, SealingRules
from kernel.model import Reading


def outbox_after_upgrade(
    path: Path, old_blob: bytes, key: Ed25519PrivateKey, seals: int, now_ms: int
) -> list[bytes]:
    """The undelivered batches, oldest first: `old_blob` as the old agent left it in the buffer at
    `path`, then `seals` batches of gateway `gw-fixture` signed with `key`, four readings each, a
    minute apart from `now_ms`."""
    with Store.open(path, StoreOptions(commit_interval_s=0.01)) as buffer:
        buffer.seal_batch(buffer.next_seq(), old_blob, buffer.empty_slice())  # left by the old agent
        batcher = Batcher(
            buffer, gateway_id="gw-fixture", private_key=key, kid=wire.kid_for(key.public_key()),
            declare=wire.SeriesInfo, due=Due(SealingRules(max_delay_ms=1000, target_readings=1000)),
            max_readings=1000, sealed=asyncio.Event(),
        )  # fmt: skip
        for n in range(seals):
            buffer.submit([Reading(f"post-{i}", "t", now_ms + n * 60_000, 20.0 + i, "Cel") for i in range(4)])
            buffer.flush_blocking(5)
            asyncio.run(batcher.seal(upto_ts_ms=None))
        return [e.blob for e in buffer.undelivered(limit=10)]
