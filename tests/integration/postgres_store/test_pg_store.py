"""The PostgreSQL store against a real PostgreSQL 15: exactly once across concurrent group commits,
replay against duplicate, window revisions, quarantine, keys, and the audit bytes."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from gateway import wire
from gateway.receiver.postgres import PostgresStore
from gateway.receiver.store import (
    Outcome,
    QuarantineEntry,
    QuarantineReason,
    RegisteredKey,
    VerifiedBatch,
)
from hil.fleet import SimulatedGateway
from kernel.errors import ConfigError, KidHintTaken, StorageError, UnknownKey
from postgres_store.pg_batches import keyring_of, signed, verified


@pytest.fixture
def store(fresh_dsn: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(fresh_dsn)
    yield opened
    opened.close()


def rows(dsn: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def test_three_receivers_committing_the_same_batches_store_each_exactly_once(fresh_dsn: str) -> None:
    gateways = [SimulatedGateway(f"gw-{i}", series=20) for i in range(6)]
    batches = [verified(g, g.batch(seq=seq)) for g in gateways for seq in range(10)]
    stores = [PostgresStore(fresh_dsn) for _ in range(3)]
    start = threading.Barrier(3)
    outcomes: list[list[Outcome]] = [[] for _ in stores]

    def receive(i: int) -> None:
        mine = batches[:]  # every receiver gets every batch (a redelivery storm), in its own order
        random.Random(i).shuffle(mine)
        start.wait()
        for group in range(0, len(mine), 12):
            outcomes[i] += stores[i].commit(mine[group : group + 12])

    threads = [threading.Thread(target=receive, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.close()
    counts = Counter(o for per_store in outcomes for o in per_store)
    assert counts == {Outcome.STORED: 60, Outcome.DUPLICATE: 120}
    assert rows(fresh_dsn, "SELECT count(*), count(DISTINCT (gateway_id, epoch, seq)) FROM batches") == [
        (60, 60)
    ]
    stored = rows(fresh_dsn, "SELECT count(*), count(DISTINCT (gateway_id, sensor, ts_ms)) FROM readings")
    assert stored == [(6000, 6000)]


def test_same_content_is_a_duplicate_other_content_a_replay_another_epoch_a_new_batch(
    store: PostgresStore, fresh_dsn: str
) -> None:
    gateway = SimulatedGateway("gw-a", series=20)
    original, forged = gateway.batch(seq=7), gateway.batch(seq=7, offset=5.0)
    outcomes = store.commit(
        [verified(gateway, original), verified(gateway, forged), verified(gateway, original)]
    )
    assert outcomes == [Outcome.STORED, Outcome.REPLAY, Outcome.DUPLICATE]
    assert store.commit([verified(gateway, forged)]) == [Outcome.REPLAY]
    assert store.commit([verified(gateway, original)]) == [Outcome.DUPLICATE]
    reinstalled = SimulatedGateway("gw-a", series=20, key=gateway.key)  # a new buffer database: a new epoch
    assert store.commit([verified(reinstalled, reinstalled.batch(seq=7, offset=5.0))]) == [Outcome.STORED]
    values = rows(fresh_dsn, "SELECT epoch, sum(value) FROM readings GROUP BY epoch ORDER BY 2")
    expected = [float(verified(gateway, b).batch.readings.value.sum()) for b in (original, forged)]
    assert [(bytes(e), round(v, 6)) for e, v in values] == [
        (gateway.epoch, round(expected[0], 6)),
        (reinstalled.epoch, round(expected[1], 6)),
    ]


def window(series: int, start: int, rev: int, mean: float) -> dict[str, list[float]]:
    return {
        "series": [series], "window_start": [start], "window_ms": [60_000], "rev": [rev], "count": [60],
        "nan_count": [0], "min": [mean - 1], "max": [mean + 1], "mean": [mean], "std": [float("nan")],
        "first": [mean], "last": [mean], "first_ts": [start], "last_ts": [start + 59_000],
    }  # fmt: skip


def windows_batch(gateway: SimulatedGateway, seq: int, *revisions: dict[str, list[float]]) -> VerifiedBatch:
    columns = {name: [v for r in revisions for v in r[name]] for name in revisions[0]}
    return verified(gateway, signed(gateway, seq, windows=wire.WindowColumns(**columns)))


def test_a_window_is_replaced_only_by_a_higher_revision(store: PostgresStore, fresh_dsn: str) -> None:
    gateway = SimulatedGateway("gw-w", series=2)
    t = 1_767_225_600_000
    store.commit([windows_batch(gateway, 1, window(0, t, 0, 10.0), window(1, t, 0, 20.0))])
    store.commit([windows_batch(gateway, 2, window(0, t, 2, 12.0))])
    store.commit([windows_batch(gateway, 3, window(0, t, 1, 11.0))])  # late and older: ignored
    # two revisions of one window in one group commit: the higher wins, whatever the order
    store.commit(
        [windows_batch(gateway, 4, window(1, t, 3, 23.0)), windows_batch(gateway, 5, window(1, t, 1, 21.0))]
    )
    got = rows(fresh_dsn, "SELECT sensor, rev, mean, std, seq FROM windows ORDER BY sensor")
    assert got == [("sensor-0", 2, 12.0, None, 2), ("sensor-1", 3, 23.0, None, 4)]


def test_gaps_and_events_keep_their_batch(store: PostgresStore, fresh_dsn: str) -> None:
    gateway = SimulatedGateway("gw-g", series=2)
    gaps = [wire.Gap(1, 1_000, 5_000, 4, "disk_full")]
    events = [wire.Event(2_000, "clock", "clock.stepped", '{"boot":"b","step_ms":3}'),
              wire.Event(3_000, "sds011", "sensor.stale", "not json \x00 at all")]  # fmt: skip
    assert store.commit([verified(gateway, signed(gateway, 3, gaps=gaps, events=events))]) == [Outcome.STORED]
    assert rows(fresh_dsn, "SELECT sensor, from_ms, to_ms, count, reason, seq FROM gaps") == [
        ("sensor-1", 1_000, 5_000, 4, "disk_full", 3)
    ]
    assert rows(fresh_dsn, "SELECT ts_ms, source, kind, detail, seq FROM events ORDER BY ts_ms") == [
        (2_000, "clock", "clock.stepped", '{"boot":"b","step_ms":3}', 3),
        (3_000, "sds011", "sensor.stale", "not json \ufffd at all", 3),  # PostgreSQL text holds no NUL
    ]


def test_the_signed_bytes_kept_re_verify_to_the_stored_readings(store: PostgresStore, fresh_dsn: str) -> None:
    gateways = [SimulatedGateway(f"gw-{i}", series=3) for i in range(3)]
    store.commit([verified(g, g.batch(seq=seq)) for g in gateways for seq in range(2)])
    keyring = keyring_of(*gateways)
    for gateway_id, epoch, seq, envelope in rows(
        fresh_dsn, "SELECT gateway_id, epoch, seq, signed FROM batches"
    ):
        batch = wire.verify_and_decode(bytes(envelope), keyring)
        assert (batch.gateway_id, batch.epoch, batch.seq) == (gateway_id, bytes(epoch), seq)
        stored = rows(
            fresh_dsn,
            "SELECT sensor, ts_ms, value FROM readings WHERE gateway_id = %s AND epoch = %s AND seq = %s"
            " ORDER BY sensor, ts_ms",
            gateway_id, epoch, seq,
        )  # fmt: skip
        signed_readings = sorted((r.sensor, r.ts_ms, r.value) for r in batch.iter_readings())
        assert stored == signed_readings


def test_quarantine_keeps_retryable_bytes_once_and_cuts_rejected_ones(store: PostgresStore) -> None:
    blob = b"\xd2" + bytes(100_000)
    unknown = QuarantineEntry(blob, QuarantineReason.UNKNOWN_KEY, "kid 00", 5, "gw-q", b"k" * 8, b"d" * 32)
    tampered = QuarantineEntry(blob, QuarantineReason.BAD_SIGNATURE, "bad", 6, "gw-q")
    store.commit([], [unknown, unknown, tampered])
    store.commit([], [unknown])
    kept = store.quarantined()
    assert [(q.reason, q.size, len(q.blob)) for q in kept] == [
        (QuarantineReason.UNKNOWN_KEY, 100_001, 100_001),
        (QuarantineReason.BAD_SIGNATURE, 100_001, 64 * 1024),
    ]
    assert [q.reason for q in store.quarantined(retryable_only=True)] == [QuarantineReason.UNKNOWN_KEY]
    assert store.quarantined(gateway_id="gw-other") == []
    assert store.commit([], [], release=[kept[0].id]) == []
    assert [q.reason for q in store.quarantined()] == [QuarantineReason.BAD_SIGNATURE]


def test_key_registry_refuses_a_kid_of_another_gateway_and_keeps_the_first_revocation(
    store: PostgresStore,
) -> None:
    key = RegisteredKey(b"k" * 8, "gw-k", b"p" * 32, added_ms=10, source="cli")
    assert store.add_key(key) is True
    assert store.add_key(key) is False
    with pytest.raises(ConfigError, match="already registered for gateway 'gw-k'"):
        store.add_key(RegisteredKey(b"k" * 8, "gw-other", b"p" * 32, added_ms=11, source="cli"))
    store.revoke_key(b"k" * 8, 20)
    store.revoke_key(b"k" * 8, 30)
    assert store.key(b"k" * 8) == RegisteredKey(b"k" * 8, "gw-k", b"p" * 32, 10, "cli", revoked_ms=20)
    assert store.keys("gw-k") == [store.key(b"k" * 8)]
    assert store.keys("gw-none") == []
    with pytest.raises(UnknownKey):
        store.revoke_key(b"x" * 8, 40)


def test_a_receiver_outlives_a_lost_database_connection(store: PostgresStore, fresh_dsn: str) -> None:
    gateway = SimulatedGateway("gw-r", series=2)
    assert store.commit([verified(gateway, gateway.batch(seq=0))]) == [Outcome.STORED]
    with psycopg.connect(fresh_dsn, autocommit=True) as admin:  # a server restart, as the store sees it
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'gateway-receiver' AND datname = current_database()"
        )
    with pytest.raises(StorageError, match="receiver database"):
        store.commit([verified(gateway, gateway.batch(seq=1))])  # nothing acknowledged: redelivered
    assert store.commit([verified(gateway, gateway.batch(seq=1))]) == [Outcome.STORED]
    assert store.count_readings("gw-r") == 20


def test_an_unreachable_database_is_a_storage_error(postgres_cluster: object) -> None:
    with pytest.raises(StorageError, match="receiver database"):
        PostgresStore("postgresql://gateway@127.0.0.1:1/none", connect_timeout_s=2)


def test_rejected_bytes_are_kept_for_the_latest_thousand_and_retryable_ones_all(store: PostgresStore) -> None:
    rejected = [QuarantineEntry(b"x%d" % i, QuarantineReason.MALFORMED, f"#{i}", i) for i in range(1_005)]
    waiting = QuarantineEntry(b"w", QuarantineReason.NOT_ENROLLED, "gw-new", 0, "gw-new", None, b"w" * 32)
    store.commit([], [waiting, *rejected])
    kept = store.quarantined(limit=5_000)
    assert [q.detail for q in kept if q.reason is QuarantineReason.MALFORMED] == [
        f"#{i}" for i in range(5, 1_005)
    ]
    assert [q.detail for q in kept if q.reason.retryable] == ["gw-new"]


def test_a_receiver_core_on_an_empty_database_stores_batches_that_name_their_catalogue(
    fresh_dsn: str,
) -> None:
    """Wire version 4 on PostgreSQL: a batch naming a catalogue the database lacks waits in the
    quarantine (catalogue_unknown) and is stored once the declaring batch arrives; a second receiver
    on the same database then decodes referring batches from the kept table."""
    from gateway.receiver import Arrival, ReceiverCore

    gw = SimulatedGateway("gw-cat", series=12)
    first = PostgresStore(fresh_dsn)
    core = ReceiverCore(first)
    core.enrol(RegisteredKey(gw.kid, gw.gateway_id, gw.public_raw, 1, "cli"))
    waiting = [gw.batch(refer=True) for _ in range(3)]
    verdicts = core.receive_many([Arrival(b, "gw-cat", 2) for b in waiting])
    assert [v.result for v in verdicts] == [QuarantineReason.CATALOGUE_UNKNOWN] * 3
    assert [q.reason for q in first.quarantined()] == [QuarantineReason.CATALOGUE_UNKNOWN] * 3
    assert [v.result for v in core.receive_many([Arrival(gw.batch(), "gw-cat", 3)])] == [Outcome.STORED]
    assert first.count_readings("gw-cat") == 4 * 60 and first.quarantined() == []
    second = PostgresStore(fresh_dsn)
    other = ReceiverCore(second)
    assert [v.result for v in other.receive_many([Arrival(gw.batch(refer=True), "gw-cat", 4)])] == [
        Outcome.STORED
    ]
    assert second.count_readings("gw-cat") == 5 * 60
    assert rows(fresh_dsn, "SELECT count(*) FROM catalogues WHERE gateway_id = 'gw-cat'") == [(1,)]
    first.close()
    second.close()


def test_version_4_batches_from_an_upgraded_outbox_are_stored_beside_version_5_ones(fresh_dsn: str) -> None:
    """The frozen version-4 pair (declaring, then naming its catalogue) and a version-5 batch of the
    same gateway declaring the same table: one catalogue row, every batch stored (the naming one first);
    the version-5 batch's gateway comes from its key and its creation time is whole seconds."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.receiver import Arrival, ReceiverCore
    from tests.unit.gateway.receiver.upgraded_outbox import version_4_pair_and_todays_declaration

    key = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
    v4_declaring, v4_referring, v5_declaring = version_4_pair_and_todays_declaration(
        key, 1_764_150_001_999, 1_764_150_001_000
    )
    store = PostgresStore(fresh_dsn)
    core = ReceiverCore(store)
    core.enrol(
        RegisteredKey(
            wire.kid_for(key.public_key()), "gw-fixture", key.public_key().public_bytes_raw(), 1, "cli"
        )
    )
    results = [
        core.receive(Arrival(b, "gw-fixture", 2)).result for b in (v4_referring, v5_declaring, v4_declaring)
    ]
    assert results == [QuarantineReason.CATALOGUE_UNKNOWN, Outcome.STORED, Outcome.STORED]
    assert store.quarantined() == [] and store.count_readings("gw-fixture") == 2 * 1650 + 1
    assert rows(fresh_dsn, "SELECT count(*) FROM catalogues WHERE gateway_id = 'gw-fixture'") == [(1,)]
    assert rows(
        fresh_dsn, "SELECT seq, created_ms FROM batches WHERE gateway_id = 'gw-fixture' ORDER BY seq"
    ) == [
        (7, 1_764_150_000_123),
        (8, 1_764_150_000_123),
        (9, 1_764_150_001_000),
    ]
    store.close()


def test_key_registry_finds_a_key_by_its_hint_and_refuses_a_second_key_with_it(store: PostgresStore) -> None:
    """The compact envelope names a key by its kid's first 4 bytes: one key per hint, whoever's."""
    key = RegisteredKey(b"hint" + b"1" * 4, "gw-h", b"p" * 32, added_ms=10, source="cli")
    assert store.add_key(key) is True
    assert store.key(b"hint") == key == store.key(b"hint" + b"1" * 4)
    assert store.key(b"hin") is None and store.key(b"nope") is None
    holders = (
        (f"key {key.kid.hex()} of gateway 'gw-h'", "gw-other"),
        (f"its own older key {key.kid.hex()}", "gw-h"),
    )
    for holder, gateway_id in holders:
        clash = RegisteredKey(b"hint" + b"2" * 4, gateway_id, b"q" * 32, added_ms=11, source="rollover")
        with pytest.raises(
            KidHintTaken, match=f"as {holder}: .*generate a new key on gateway '{gateway_id}'"
        ):
            store.add_key(clash)
    assert store.keys() == [key]
    store.revoke_key(b"hint", 20)  # as `quarantine list` shows a compact envelope's kid
    assert store.key(b"hint") == RegisteredKey(key.kid, "gw-h", b"p" * 32, 10, "cli", revoked_ms=20)
