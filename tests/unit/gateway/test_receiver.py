"""The reference receiver: verified batches stored once; tampered, unknown-key and replayed ones rejected."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import wire
from gateway.clock import ClockSample, ClockWatch
from gateway.model import HealthEvent, Quality
from gateway.receiver import Outcome, Receiver, ReceiverDatabase


def make_batch(
    key: Ed25519PrivateKey, seq: int, *, gateway_id: str = "gw-1", n: int = 5, offset: float = 0.0
) -> bytes:
    readings = wire.ReadingColumns(
        series=np.zeros(n, dtype=np.int32),
        ts_ms=np.arange(n, dtype=np.int64) * 1000 + 1_700_000_000_000,
        value=np.round(np.linspace(10.0, 11.0, n) + offset, 1),
        quality=np.zeros(n, dtype=np.uint16),
    )
    body = wire.encode_batch(
        gateway_id=gateway_id,
        seq=seq,
        created_ms=1_700_000_010_000,
        series=[wire.SeriesInfo("weather-1", "air_temperature", "Cel", resolution=0.1)],
        readings=readings,
    )
    return wire.sign(body, key, wire.kid_for(key.public_key()))


def receiver_with(
    tmp_path: Path, key: Ed25519PrivateKey, gateway_id: str = "gw-1"
) -> tuple[Receiver, ReceiverDatabase]:
    keys = tmp_path / "keys"
    keys.mkdir()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (keys / f"{gateway_id}.pem").write_bytes(pem)
    database = ReceiverDatabase(tmp_path / "received.db")
    return Receiver(host="127.0.0.1", port=1, keys_dir=keys, database=database), database


def test_each_reading_is_stored_once_and_duplicates_are_counted(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    receiver, database = receiver_with(tmp_path, key)
    first, second = make_batch(key, 1), make_batch(key, 2)
    assert receiver.handle("gateways/gw-1/batches", first) is Outcome.STORED
    assert receiver.handle("gateways/gw-1/batches", first) is Outcome.DUPLICATE
    assert receiver.handle("gateways/gw-1/batches", second) is Outcome.STORED
    assert database.count_readings("gw-1") == 10
    stats = receiver.statistics()
    assert (stats.verified, stats.duplicates_dropped, stats.rejected, stats.batches_stored) == (3, 1, 0, 2)


def test_replayed_seq_with_other_content_is_rejected(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    receiver, database = receiver_with(tmp_path, key)
    receiver.handle("gateways/gw-1/batches", make_batch(key, 7))
    assert receiver.handle("gateways/gw-1/batches", make_batch(key, 7, offset=5.0)) is Outcome.REPLAY
    assert receiver.statistics().rejected_by_reason == {"replay": 1}
    assert database.count_readings() == 5


def test_tampered_unknown_key_and_garbage_are_rejected_by_reason(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    receiver, database = receiver_with(tmp_path, key)
    blob = bytearray(make_batch(key, 1))
    blob[-70] ^= 0x01  # inside the payload, before the 64-byte signature
    assert receiver.handle("gateways/gw-1/batches", bytes(blob)) is None
    stranger = Ed25519PrivateKey.generate()
    assert receiver.handle("gateways/gw-1/batches", make_batch(stranger, 1)) is None
    assert receiver.handle("gateways/gw-1/batches", b"\x00garbage") is None
    reasons = receiver.statistics().rejected_by_reason
    assert reasons == {"BadSignature": 1, "UnknownKey": 1, "MalformedBatch": 1}
    assert database.count_readings() == 0


def test_batch_on_another_gateways_topic_is_rejected(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    receiver, database = receiver_with(tmp_path, key)
    assert receiver.handle("gateways/gw-2/batches", make_batch(key, 1)) is None
    assert receiver.statistics().rejected_by_reason == {"topic_mismatch": 1}
    assert database.count_readings() == 0


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
    key = Ed25519PrivateKey.generate()
    receiver, database = receiver_with(tmp_path, key)
    for seq, rev, mean in [(1, 0, 10.0), (3, 2, 30.0), (2, 1, 20.0)]:  # rev 1 is delayed past rev 2
        assert receiver.handle("gateways/gw-1/batches", window_batch(key, seq, rev, mean)) is Outcome.STORED
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
    key = Ed25519PrivateKey.generate()
    receiver, database = receiver_with(tmp_path, key)
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
        assert receiver.handle("gateways/gw-1/batches", blob) is Outcome.STORED
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
