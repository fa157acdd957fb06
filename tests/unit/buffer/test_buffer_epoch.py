"""The epoch: drawn with each new database (or at the upgrade of an old one), kept across restarts, in every batch."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from buffer import Store, StoreOptions
from gateway import wire
from gateway.batcher import Batcher
from gateway.sealing import Due, SealingRules
from kernel.model import Reading

FAST = StoreOptions(commit_interval_s=0.01)


def test_each_new_database_has_its_own_epoch_and_keeps_it_across_restarts(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.db", FAST) as a, Store.open(tmp_path / "b.db", FAST) as b:
        first = a.epoch
        assert len(first) == 16 and first != b.epoch and wire.NO_EPOCH not in (first, b.epoch)
    with Store.open(tmp_path / "a.db", FAST) as again:
        assert again.epoch == first


def test_a_version_2_database_draws_an_epoch_at_upgrade_and_its_seqs_go_on(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    with Store.open(db, FAST) as store:
        store.submit([Reading("s", "t", 1, 1.0, "C")])
        store.flush_blocking(5)
        pending = store.pending()
        assert pending is not None
        store.seal_batch(1, b"x", pending)
    with sqlite3.connect(db) as conn:  # what a version-2 agent left: no identity table
        conn.execute("DROP TABLE identity")
        conn.execute("PRAGMA user_version=2")
    with Store.open(db, FAST) as upgraded:
        assert len(upgraded.epoch) == 16 and upgraded.statistics().quarantined == 0
        assert upgraded.next_seq() == 2
        assert [e.seq for e in upgraded.undelivered()] == [1]


def test_every_batch_the_batcher_seals_carries_the_database_epoch(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    with Store.open(tmp_path / "buffer.db", FAST) as store:
        batcher = Batcher(
            store,
            gateway_id="gw-test",
            private_key=key,
            kid=wire.kid_for(key.public_key()),
            declare=wire.SeriesInfo,
            due=Due(SealingRules(max_delay_ms=1000, target_readings=1000)),
            max_readings=2,
            sealed=asyncio.Event(),
        )
        store.submit([Reading("s", "t", ts, 1.0, "C") for ts in range(5)])
        store.flush_blocking(5)
        assert asyncio.run(batcher.seal(upto_ts_ms=None)) == 3
        known = wire.KnownCatalogues()
        batches = [
            known.learn(wire.verify_with_key(e.blob, key.public_key(), known.lookup))
            for e in store.undelivered()
        ]
        assert [(b.epoch, b.seq) for b in batches] == [(store.epoch, 1), (store.epoch, 2), (store.epoch, 3)]
