"""The receiver core over the SQLite store: each batch stored once per (gateway id, epoch, seq), a copy
of the signed content in another envelope is a duplicate, what cannot be verified now is quarantined."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cbor2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import wire
from gateway.clock import ClockSample, ClockWatch
from gateway.receiver import Arrival, Outcome, QuarantineReason, ReceiverCore, RegisteredKey, SqliteStore
from gateway.receiver.sqlite import lookup_query
from hil.fleet import SimulatedGateway
from kernel.model import HealthEvent, Quality

NOW = 1_767_300_000_000


def enrolled(tmp_path: Path, *gateways: SimulatedGateway) -> tuple[ReceiverCore, SqliteStore]:
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    for gw in gateways:
        core.enrol(RegisteredKey(gw.kid, gw.gateway_id, gw.public_raw, NOW, "cli"))
    return core, store


def arrive(core: ReceiverCore, blob: bytes, gateway_id: str = "gw-1") -> Outcome | QuarantineReason:
    return core.receive(Arrival(blob, gateway_id, NOW)).result


def reenvelope(blob: bytes, unprotected: dict[int, object], *, tagged: bool | None = None) -> bytes:
    """The same signed content in another envelope: an altered unprotected header, or a tag added to
    (or taken from) it (still verifies: neither is signed). `tagged` None keeps the blob's form."""
    message = cbor2.loads(blob)
    was_tagged = isinstance(message, cbor2.CBORTag)
    protected, _, payload, signature = message.value if was_tagged else message
    parts = [protected, unprotected, payload, signature]
    return (
        cbor2.dumps(cbor2.CBORTag(18, parts))
        if (was_tagged if tagged is None else tagged)
        else cbor2.dumps(parts)
    )


def test_each_reading_is_stored_once_and_duplicates_are_counted(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1")
    core, store = enrolled(tmp_path, gw)
    first, second = gw.batch(), gw.batch()
    assert arrive(core, first) is Outcome.STORED
    assert arrive(core, first) is Outcome.DUPLICATE
    assert arrive(core, second) is Outcome.STORED
    assert store.count_readings("gw-1") == 10
    stats = core.statistics()
    assert (stats.verified, stats.duplicates_dropped, stats.rejected, stats.batches_stored) == (3, 1, 0, 2)


def test_one_group_commit_judges_every_arrival_and_keeps_the_signed_bytes(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1")
    core, store = enrolled(tmp_path, gw)
    blobs = [gw.batch() for _ in range(5)]
    verdicts = core.receive_many([Arrival(b, "gw-1", NOW) for b in [*blobs, blobs[0]]])
    assert [v.result for v in verdicts] == [Outcome.STORED] * 5 + [Outcome.DUPLICATE]
    store.close()
    with sqlite3.connect(tmp_path / "received.db") as db:
        kept = db.execute("SELECT signed, epoch FROM batches ORDER BY seq").fetchall()
    assert [bytes(k) for k, _ in kept] == blobs  # the audit record: re-verifiable later
    assert {bytes(e) for _, e in kept} == {gw.epoch}


def test_copies_and_replays_within_one_group_are_judged_in_order_and_stored_once(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1", series=2)
    core, store = enrolled(tmp_path, gw)
    earlier = gw.batch()
    assert arrive(core, earlier) is Outcome.STORED
    batch, other = gw.batch(), gw.batch()
    replay = gw.batch(seq=1, offset=5.0)  # batch's identity with other content
    group = [other, batch, earlier, replay, batch, gw.batch(seq=0, offset=1.0)]
    verdicts = core.receive_many([Arrival(b, "gw-1", NOW) for b in group])
    assert [v.result for v in verdicts] == [
        Outcome.STORED, Outcome.STORED, Outcome.DUPLICATE, Outcome.REPLAY, Outcome.DUPLICATE, Outcome.REPLAY,
    ]  # fmt: skip
    assert core.receive(Arrival(gw.batch(), "gw-1", NOW)).result is Outcome.STORED  # the group after
    store.close()
    with sqlite3.connect(tmp_path / "received.db") as db:
        per_seq = db.execute(
            "SELECT seq, count(*), min(value) FROM readings GROUP BY seq ORDER BY seq"
        ).fetchall()
    first = wire.verify_with_key(batch, gw.key.public_key()).readings.value.min()
    assert [(s, c) for s, c, _ in per_seq] == [(0, 10), (1, 10), (2, 10), (3, 10)]
    assert per_seq[1][2] == first  # seq 1's readings are the genuine batch's, not the replay's


def test_a_groups_readings_are_stored_row_for_row_in_arrival_order(tmp_path: Path) -> None:
    gateways = [SimulatedGateway(f"gw-{i}", series=3) for i in range(3)]
    core, store = enrolled(tmp_path, *gateways)
    blobs = [gw.batch(per_series=per) for per in (7, 11, 5) for gw in gateways]  # 207 rows: not whole 50s
    verdicts = core.receive_many(
        [Arrival(b, b_gw.gateway_id, NOW) for b, b_gw in zip(blobs, gateways * 3, strict=True)]
    )
    assert {v.result for v in verdicts} == {Outcome.STORED}
    expected = []
    for blob, gw in zip(blobs, gateways * 3, strict=True):
        batch = wire.verify_with_key(blob, gw.key.public_key())
        r = batch.readings
        expected += [
            (gw.gateway_id, batch.series[s].sensor, t, v, q, batch.seq)
            for s, t, v, q in zip(
                r.series.tolist(), r.ts_ms.tolist(), r.value.tolist(), r.quality.tolist(), strict=True
            )
        ]
    store.close()
    with sqlite3.connect(tmp_path / "received.db") as db:
        rows = db.execute(
            "SELECT s.gateway_id, s.sensor, r.ts_ms, r.value, r.quality, b.seq FROM reading_rows r"
            " JOIN series s USING (series_id) JOIN batch_refs b USING (batch_id) ORDER BY r.rowid"
        ).fetchall()
    assert len(expected) == 207
    assert rows == expected


def test_the_identity_lookup_of_a_group_searches_the_primary_key(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "received.db")
    plan = store._db.execute(f"EXPLAIN QUERY PLAN {lookup_query(3)}", ["gw", b"e", 1] * 3).fetchall()
    steps = [str(row[-1]) for row in plan]
    assert any("SEARCH b USING PRIMARY KEY" in step for step in steps), steps
    assert not any(step.startswith("SCAN b") for step in steps), steps  # would slow down as it grows


def test_a_new_epoch_starts_seq_again_without_a_replay(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1")
    core, store = enrolled(tmp_path, gw)
    assert arrive(core, gw.batch()) is Outcome.STORED
    gw.epoch, gw.seq = bytes(range(16)), 0  # a new buffer database (SD card swap, reinstall)
    assert arrive(core, gw.batch(offset=3.0)) is Outcome.STORED
    assert store.count_readings() == 10


def test_replayed_identity_with_other_content_is_rejected_and_kept_aside(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1")
    core, store = enrolled(tmp_path, gw)
    arrive(core, gw.batch(seq=7))
    assert arrive(core, gw.batch(seq=7, offset=5.0)) is Outcome.REPLAY
    assert core.statistics().by_reason == {"stored": 1, "replay": 1}
    assert store.count_readings() == 5
    assert [q.reason for q in store.quarantined()] == [QuarantineReason.REPLAY]


def test_a_reenveloped_copy_arriving_first_never_turns_the_genuine_batch_into_a_replay(
    tmp_path: Path,
) -> None:
    gw = SimulatedGateway("gw-1")
    core, store = enrolled(tmp_path, gw)
    genuine = gw.batch()
    assert arrive(core, reenvelope(genuine, {99: b"x"})) is QuarantineReason.MALFORMED  # not canonical
    assert arrive(core, reenvelope(genuine, {}, tagged=True)) is QuarantineReason.MALFORMED  # tag 18 added
    assert arrive(core, genuine) is Outcome.STORED
    assert arrive(core, genuine) is Outcome.DUPLICATE
    assert store.count_readings() == 5


def test_tampered_and_garbage_are_rejected_kept_bounded_and_never_stored(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1")
    core, store = enrolled(tmp_path, gw)
    blob = bytearray(gw.batch())
    blob[-70] ^= 0x01  # inside the payload, before the 64-byte signature
    assert arrive(core, bytes(blob)) is QuarantineReason.BAD_SIGNATURE
    assert arrive(core, b"\x00garbage") is QuarantineReason.MALFORMED
    assert store.count_readings() == 0
    kept = store.quarantined()
    assert [(q.reason, q.blob) for q in kept] == [
        (QuarantineReason.BAD_SIGNATURE, bytes(blob)),
        (QuarantineReason.MALFORMED, b"\x00garbage"),
    ]
    assert store.quarantined(retryable_only=True) == []
    assert core.statistics().rejected == 2


def test_batch_on_another_gateways_topic_is_rejected(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1")
    core, store = enrolled(tmp_path, gw, SimulatedGateway("gw-2"))
    assert arrive(core, gw.batch(), "gw-2") is QuarantineReason.TOPIC_MISMATCH
    assert store.count_readings() == 0


def window_batch(key: Ed25519PrivateKey, seq: int, rev: int, mean: float) -> bytes:
    one = {name: np.zeros(1, dtype) for name, dtype in wire.batch.WINDOW_FIELDS}
    one.update(
        window_start=np.array([1_700_000_040_000]),
        window_ms=np.array([60_000]),
        rev=np.array([rev]),
        count=np.array([rev + 1]),
        mean=np.array([mean]),
        std=np.array([np.nan]),
    )
    body = wire.encode_batch(
        gateway_id="gw-1",
        seq=seq,
        created_ms=1_700_000_100_000,
        series=[wire.SeriesInfo("dust-1", "pm10", "ug/m3")],
        readings=wire.ReadingColumns.empty(),
        windows=wire.WindowColumns(**one),
    )
    return wire.sign(body, key, wire.kid_for(key.public_key()))


def test_a_higher_window_revision_supersedes_and_a_lower_one_arriving_later_is_ignored(
    tmp_path: Path,
) -> None:
    gw = SimulatedGateway("gw-1")
    receiver, database = enrolled(tmp_path, gw)
    for seq, rev, mean in [(1, 0, 10.0), (3, 2, 30.0), (2, 1, 20.0)]:  # rev 1 is delayed past rev 2
        assert arrive(receiver, window_batch(gw.key, seq, rev, mean)) is Outcome.STORED
    database.close()
    with sqlite3.connect(tmp_path / "received.db") as db:
        rows = db.execute("SELECT sensor, window_start, rev, count, mean, std FROM windows").fetchall()
    assert rows == [("dust-1", 1_700_000_040_000, 2, 3, 30.0, None)]  # NaN is stored as NULL
    assert receiver.statistics().windows_stored == 3


def clock_batch(
    key: Ed25519PrivateKey, seq: int, readings: list[tuple[int, int]], events: list[HealthEvent]
) -> bytes:
    """A batch of (ts_ms, quality) readings of one series, with health events."""
    columns = wire.ReadingColumns(
        series=np.zeros(len(readings), np.int32),
        ts_ms=np.array([t for t, _ in readings], np.int64),
        value=np.arange(len(readings), dtype=np.float64),
        quality=np.array([q for _, q in readings], np.uint16),
    )
    body = wire.encode_batch(
        gateway_id="gw-1",
        seq=seq,
        created_ms=1_700_000_000_000,
        series=[wire.SeriesInfo("dust-1", "pm10", "ug/m3")],
        readings=columns,
        events=[wire.Event(e.ts_ms, e.source, e.kind, e.detail) for e in events],
    )
    return wire.sign(body, key, wire.kid_for(key.public_key()))


def test_readings_taken_on_an_unsynchronised_clock_are_corrected_by_the_step_once_it_is(
    tmp_path: Path,
) -> None:
    gw = SimulatedGateway("gw-1")
    key = gw.key
    receiver, database = enrolled(tmp_path, gw)
    saved, week = 1_700_000_000_000, 7 * 86_400_000
    flag = int(Quality.CLOCK_UNSYNCED)
    watch = ClockWatch(boot="boot-a")
    unsync = watch.observe(ClockSample(saved, 1_000, synchronised=False))
    synced = watch.observe(ClockSample(saved + week + 2_000, 3_000, synchronised=True))
    batches = [
        clock_batch(key, 1, [(saved, flag), (saved + 1_000, flag)], unsync),
        # the batch sealed just after NTP stepped the clock: one reading before, one after
        clock_batch(key, 2, [(saved + 1_500, flag), (saved + week + 2_500, 0)], synced),
        clock_batch(key, 3, [(saved + week + 3_500, 0)], []),
    ]
    for blob in reversed(batches):  # arrival order does not matter
        assert arrive(receiver, blob) is Outcome.STORED
    database.close()
    with sqlite3.connect(tmp_path / "received.db") as db:
        corrections = db.execute("SELECT boot, from_seq, to_seq, step_ms FROM clock_corrections").fetchall()
        corrected = db.execute("SELECT ts_ms, quality FROM readings_corrected ORDER BY seq, value").fetchall()
        raw = db.execute("SELECT ts_ms FROM readings ORDER BY seq, value").fetchall()
    assert corrections == [("boot-a", 1, 2, week)]
    assert corrected == [
        (saved + week, flag),
        (saved + week + 1_000, flag),
        (saved + week + 1_500, flag),
        (saved + week + 2_500, 0),
        (saved + week + 3_500, 0),
    ]
    assert [t for (t,) in raw][:3] == [saved, saved + 1_000, saved + 1_500]  # stored as delivered
