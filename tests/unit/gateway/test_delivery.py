"""Delivery without a broker: outbox -> uplink -> acknowledgement -> the outbox row is gone.

A real Store and Batcher, the real Delivery, and a loopback transport (uplink_fakes.py) that acknowledges
what it is handed: the path the MQTT and HTTPS uplinks share, in well under a second.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_sealing import KEY
from test_sealing import batcher as sealing_batcher
from uplink_fakes import LoopbackUplink

from buffer import Store, StoreOptions
from gateway import wire
from gateway.batcher import Batcher
from gateway.sealing import SealingRules
from gateway.uplink.delivery import Delivery
from kernel.errors import UplinkError
from kernel.model import Reading

T0 = 1_780_000_000_000


def batcher(store: Store, sealed: asyncio.Event) -> Batcher:
    # ten readings a batch: several batches from a few readings
    rules = SealingRules(max_delay_ms=60_000, target_readings=20_000)
    return sealing_batcher(store, rules, None, sealed=sealed, max_readings=10)


async def seal(store: Store, b: Batcher, first: int, count: int) -> None:
    store.submit(
        [
            Reading("weather-1", "air_temperature", T0 + i * 1000, 20 + i / 10, "Cel")
            for i in range(first, first + count)
        ]
    )
    await store.flush()
    await b.seal(upto_ts_ms=None)


async def until_delivered(store: Store, uplink: LoopbackUplink) -> None:
    async with asyncio.timeout(5):
        while await asyncio.to_thread(store.undelivered, limit=1):
            uplink.delivered.clear()
            await uplink.delivered.wait()


async def test_every_sealed_batch_is_sent_in_seq_order_acknowledged_and_removed(tmp_path: Path) -> None:
    sealed = asyncio.Event()
    with Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store:
        b = batcher(store, sealed)
        await seal(store, b, 0, 25)
        uplink = LoopbackUplink(store, sealed=sealed)
        running = asyncio.create_task(uplink.run())
        try:
            await until_delivered(store, uplink)
            await seal(store, b, 25, 12)  # sealed while the link is up: `sealed` wakes the uplink
            await until_delivered(store, uplink)
        finally:
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        stats, outbox = uplink.statistics(), store.undelivered(limit=100)
        store_stats = store.statistics()
    seqs = [entry.seq for entry in uplink.sent]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)) == 5  # 10 + 10 + 5, then 10 + 2
    known = wire.KnownCatalogues()  # the batches after the first name the catalogue it declared
    batches = [known.learn(wire.verify_with_key(e.blob, KEY.public_key(), known.lookup)) for e in uplink.sent]
    assert sum(len(batch.readings) for batch in batches) == 37
    assert (stats.batches_acked, stats.readings_acked, stats.last_acked_seq) == (5, 37, seqs[-1])
    assert outbox == [] and store_stats.outbox_rows == 0 and store_stats.delivered == 37


async def test_a_link_lost_mid_batch_resends_what_was_not_acknowledged_byte_identical(
    tmp_path: Path,
) -> None:
    sealed = asyncio.Event()
    with Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store:
        b = batcher(store, sealed)
        await seal(store, b, 0, 30)
        waiting = {entry.seq: entry.blob for entry in store.undelivered(limit=100)}
        uplink = LoopbackUplink(store, sealed=sealed)
        uplink.fail_once = {sorted(waiting)[1]}
        with pytest.raises(ExceptionGroup) as lost:  # the supervisor restarts the uplink after this
            await uplink.run()
        assert lost.group_contains(UplinkError)
        left = {entry.seq for entry in store.undelivered(limit=100)}
        assert sorted(waiting)[1] in left
        running = asyncio.create_task(uplink.run())
        try:
            await until_delivered(store, uplink)
        finally:
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        assert store.undelivered(limit=100) == []
    # at least once: a batch in flight beside the lost one may go again (its acknowledgement may have been
    # cut off); the receiver deduplicates. Every batch went, and every copy is the bytes signed once.
    assert {entry.seq for entry in uplink.sent} == set(waiting)
    assert all(entry.blob == waiting[entry.seq] for entry in uplink.sent)


async def test_the_status_shows_the_newest_acknowledged_batch_whatever_order_the_acks_came_in(
    tmp_path: Path,
) -> None:
    """Up to max_inflight batches are in flight and their acknowledgements finish in any order (each
    waits for its outbox delete in a thread): `last_acked_seq` must not go back to an older one."""
    sealed = asyncio.Event()
    with Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01)) as store:
        await seal(store, batcher(store, sealed), 0, 30)  # three batches
        entries = store.undelivered(limit=10)
        delivery = Delivery(store, sealed=sealed, max_inflight=4)
        for entry in (entries[0], entries[2], entries[1]):
            await delivery.acknowledged(entry)
        stats = delivery.statistics("connected")
    assert [e.seq for e in entries] == sorted(e.seq for e in entries) and len(entries) == 3
    assert (stats.batches_acked, stats.readings_acked, stats.last_acked_seq) == (3, 30, entries[2].seq)
