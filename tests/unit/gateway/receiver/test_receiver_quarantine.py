"""Quarantine and key registry: nothing well-formed is thrown away, a rollover enrols the next key."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import numpy as np
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import wire
from gateway.cli import main
from gateway.receiver import Arrival, Outcome, QuarantineReason, ReceiverCore, RegisteredKey, SqliteStore
from gateway.wire import ctxmix, mixing
from gateway.wire.body import body_cbor
from hil.fleet import T0_MS, SimulatedGateway
from kernel.errors import ConfigError

NOW = 1_767_300_000_000


def key_of(gw: SimulatedGateway, source: str = "cli") -> RegisteredKey:
    return RegisteredKey(gw.kid, gw.gateway_id, gw.public_raw, NOW, source)


def arrive(core: ReceiverCore, blob: bytes, gateway_id: str = "gw-1") -> Outcome | QuarantineReason:
    return core.receive(Arrival(blob, gateway_id, NOW)).result


def test_batches_of_an_unenrolled_gateway_wait_in_quarantine_until_its_key_is_enrolled(
    tmp_path: Path,
) -> None:
    gw = SimulatedGateway("gw-1")
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    blobs = [gw.batch() for _ in range(3)]
    assert [arrive(core, b) for b in blobs] == [QuarantineReason.NOT_ENROLLED] * 3
    assert arrive(core, blobs[0]) is QuarantineReason.NOT_ENROLLED  # a resend is kept once
    assert [q.blob for q in store.quarantined()] == blobs
    assert core.enrol(key_of(gw)) == 3
    assert store.count_readings("gw-1") == 15
    assert store.quarantined() == []


def test_an_unknown_kid_of_an_enrolled_gateway_and_a_revoked_kid_are_quarantined(tmp_path: Path) -> None:
    gw, stranger = SimulatedGateway("gw-1"), SimulatedGateway("gw-1")
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    core.enrol(key_of(gw))
    assert arrive(core, stranger.batch()) is QuarantineReason.UNKNOWN_KEY
    store.revoke_key(gw.kid, NOW + 1)
    assert core.retry(None, NOW + 1) == 0  # the registry is re-read: gw's key is revoked now
    assert arrive(core, gw.batch()) is QuarantineReason.REVOKED
    reasons = [q.reason for q in store.quarantined(retryable_only=True)]
    assert reasons == [QuarantineReason.UNKNOWN_KEY, QuarantineReason.REVOKED]
    assert store.count_readings() == 0


def test_a_rollover_enrols_the_new_key_and_releases_batches_signed_with_it(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1")
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    core.enrol(key_of(gw))
    announcing = gw.rotate()  # signed by the old key, announces the new one
    after = [gw.batch() for _ in range(2)]  # signed by the new key
    # the new key's batches overtake the announcement (another receiver, a reconnect): quarantined
    assert [arrive(core, b) for b in after] == [QuarantineReason.UNKNOWN_KEY] * 2
    assert arrive(core, announcing) is Outcome.STORED
    assert store.count_readings("gw-1") == 15 and store.quarantined() == []
    assert {k.kid: k.source for k in store.keys("gw-1")}[gw.kid] == "rollover"
    assert arrive(core, gw.batch()) is Outcome.STORED
    assert core.statistics().keys_enrolled == 1


def test_a_kid_is_never_registered_for_two_gateways(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1")
    store = SqliteStore(tmp_path / "received.db")
    assert store.add_key(key_of(gw)) is True
    assert store.add_key(key_of(gw)) is False
    with pytest.raises(ConfigError, match="already registered"):
        store.add_key(RegisteredKey(gw.kid, "gw-2", gw.public_raw, NOW, "cli"))


def test_cli_lists_quarantine_and_keys_add_releases_and_retry_reports(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-7")
    db = tmp_path / "received.db"
    store = SqliteStore(db)
    ReceiverCore(store).receive_many([Arrival(gw.batch(), "gw-7", NOW) for _ in range(2)])
    store.close()
    runner = CliRunner()
    listed = runner.invoke(main, ["receiver", "quarantine", "list", "--db", str(db), "--json"])
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["reason"], r["gateway_id"], r["retryable"]) for r in rows] == [
        ("not_enrolled", "gw-7", True)
    ] * 2
    pem = tmp_path / "gw-7.pem"
    pem.write_bytes(gw.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    added = runner.invoke(main, ["receiver", "keys", "add", "gw-7", str(pem), "--db", str(db)])
    assert added.exit_code == 0, added.output
    assert f"enrolled kid {gw.kid.hex()} for gw-7; released 2" in added.output
    keys = runner.invoke(main, ["receiver", "keys", "list", "--db", str(db), "--json"])
    assert [json.loads(line)["kid"] for line in keys.output.splitlines()] == [gw.kid.hex()]
    revoked = runner.invoke(main, ["receiver", "keys", "revoke", gw.kid.hex(), "--db", str(db)])
    assert revoked.exit_code == 0, revoked.output
    retried = runner.invoke(main, ["receiver", "quarantine", "retry", "--db", str(db)])
    assert retried.output.strip() == "released 0 batches; 0 still quarantined"
    assert SqliteStore(db).count_readings("gw-7") == 10


def test_cli_refuses_to_enrol_a_gateway_id_outside_the_alphabet(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1")
    pem = tmp_path / "gw.pem"
    pem.write_bytes(gw.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    db = tmp_path / "received.db"
    result = CliRunner().invoke(main, ["receiver", "keys", "add", "gw-b/x", str(pem), "--db", str(db)])
    assert result.exit_code == 2 and "1 to 64 of A-Z a-z 0-9" in result.output


def test_enrolling_a_key_releases_its_batches_behind_many_that_still_do_not_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.receiver.core.RETRY_PAGE", 2)
    stranger, gw = SimulatedGateway("gw-1"), SimulatedGateway("gw-1")
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    for _ in range(5):  # older, and still unverifiable after gw's key is enrolled
        arrive(core, stranger.batch())
    arrive(core, gw.batch())
    assert core.enrol(key_of(gw)) == 1
    assert store.count_readings() == 5 and len(store.quarantined()) == 5


def test_a_receiver_without_its_coder_library_keeps_method_8_batches_until_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken install (no `_ctxmix.so`) must not reject, or lose, batches whose steps are coded by
    method 8: they wait in the retryable quarantine and are stored once the library loads again."""
    gw = SimulatedGateway("gw-1")
    hours = np.arange(24 * 40)  # 40 days of an hourly temperature: long enough for method 8 to win
    rng = np.random.default_rng(8)
    value = np.round(12 + 6 * np.sin(2 * np.pi * hours / 24) + np.cumsum(rng.normal(0, 0.3, hours.size)), 1)
    readings = wire.ReadingColumns(
        np.zeros(hours.size, np.int32), T0_MS + 3_600_000 * hours, value, np.zeros(hours.size, np.uint16)
    )
    series = [wire.SeriesInfo("station", "air_temperature", "Cel", resolution=0.1)]
    body = wire.encode_batch(
        gateway_id="gw-1", seq=0, created_ms=T0_MS, series=series, readings=readings, epoch=gw.epoch
    )
    assert cbor2.loads(body_cbor(body))[5][3][0] == mixing.METHOD_CONTEXT_MIXING
    blob = wire.sign(body, gw.key, gw.kid)
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    core.enrol(key_of(gw))
    monkeypatch.setattr(ctxmix, "library", lambda: ctxmix.load(tmp_path / "missing" / "_ctxmix.so"))
    assert arrive(core, blob) is QuarantineReason.UNSUPPORTED_VERSION
    (kept,) = store.quarantined(retryable_only=True)
    assert kept.blob == blob and "coder library" in kept.detail
    monkeypatch.undo()
    assert core.retry(None, NOW + 1) == 1
    assert store.count_readings("gw-1") == hours.size and store.quarantined() == []
