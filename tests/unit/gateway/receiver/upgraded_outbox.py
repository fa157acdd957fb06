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


#: the frozen batches of earlier writers (tests/unit/gateway/wire/test_wire_versions.py names their writers)
FROZEN = Path(__file__).parent.parent / "wire" / "data"


def version_4_pair_and_todays_declaration(
    key: Ed25519PrivateKey, created_ms: int, ts_ms: int
) -> tuple[bytes, bytes, bytes]:
    """What an upgraded outbox holds for gateway `gw-fixture` (signed with `key`, the fixtures' 0x05
    key): the frozen version-4 pair (seq 7 declares the catalogue, seq 8 names it), then seq 9 of
    today's writer declaring the same table, with one reading of 12.5 at `ts_ms`."""
    v4_declaring, v4_referring = (
        (FROZEN / f"batch_v4_{n}.cose").read_bytes() for n in ("declaring", "referring")
    )
    ring = wire.Keyring()
    ring.add("gw-fixture", key.public_key())
    table = wire.verify_and_decode(v4_declaring, ring).series
    body = wire.encode_batch(
        gateway_id="gw-fixture", seq=9, created_ms=created_ms, series=table, epoch=bytes(range(16)),
        readings=wire.ReadingColumns(series=[0], ts_ms=[ts_ms], value=[12.5], quality=[0]),
    )  # fmt: skip
    return v4_declaring, v4_referring, wire.sign(body, key, wire.kid_for(key.public_key()))
