"""The receiver and the compact envelope: keys found by their 4-byte hint, a hint never shared, and the
tagged batches an upgraded agent's outbox still holds stored beside the compact ones it writes now."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import wire
from gateway.cli import main
from gateway.receiver import Arrival, Outcome, QuarantineReason, ReceiverCore, RegisteredKey, SqliteStore
from hil.fleet import SimulatedGateway, keys_sharing_a_hint
from kernel.errors import ConfigError, KidHintTaken
from tests.unit.gateway.receiver.upgraded_outbox import outbox_after_upgrade

NOW = 1_767_300_000_000
DATA = Path(__file__).parent.parent / "wire" / "data"
#: the keys of the frozen tagged batch (test_wire_versions.py): it is signed by OLD and announces NEW
OLD = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
NEW = Ed25519PrivateKey.from_private_bytes(b"\x06" * 32)


def registered(key: Ed25519PrivateKey, gateway_id: str, source: str = "cli") -> RegisteredKey:
    return RegisteredKey(
        wire.kid_for(key.public_key()), gateway_id, key.public_key().public_bytes_raw(), NOW, source
    )


def gateway_with(key: Ed25519PrivateKey, gateway_id: str = "gw-1") -> SimulatedGateway:
    return SimulatedGateway(gateway_id, key=key)


def test_an_upgraded_agent_delivers_the_tagged_rollover_in_its_outbox_and_its_compact_batches(
    tmp_path: Path,
) -> None:
    """The outbox holds the batch the agent sealed before the upgrade: the tagged envelope, signed by
    the old key, announcing the new one (seq 8 of the frozen fixture). The upgraded agent seals compact
    batches signed by the new key behind it. Delivered newest first (the worst order), all are stored;
    the new key is enrolled by the tagged batch's rollover, whose proof names the old key's full kid."""
    tagged = (DATA / "batch_v5_tagged_rollover.cose").read_bytes()
    assert tagged[:2] == b"\xd2\x84"
    outbox = outbox_after_upgrade(tmp_path / "buffer.db", tagged, NEW, 2, NOW)
    assert outbox[0] == tagged and len(outbox) == 3
    assert all(blob[:5] == b"\x84\x47\xa1\x04\x44" for blob in outbox[1:])  # compact, untagged
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    core.enrol(registered(OLD, "gw-fixture"))
    verdicts = [core.receive(Arrival(blob, "gw-fixture", NOW)).result for blob in reversed(outbox)]
    assert verdicts == [QuarantineReason.UNKNOWN_KEY] * 2 + [Outcome.STORED]
    assert store.count_readings("gw-fixture") == 1650 + 2 * 4
    assert store.quarantined() == []
    keys = store.keys()
    assert {k.kid: k.source for k in keys} == {
        wire.kid_for(OLD.public_key()): "cli",
        wire.kid_for(NEW.public_key()): "rollover",
    }
    store.close()
    with sqlite3.connect(tmp_path / "received.db") as db:
        kids = {bytes(kid) for (kid,) in db.execute("SELECT kid FROM batches")}
    # the full 8-byte kid of the verifying key, whichever envelope carried 8 or 4 bytes of it
    assert kids == {wire.kid_for(OLD.public_key()), wire.kid_for(NEW.public_key())}


def test_a_hostile_hint_waits_in_the_quarantine_with_the_bytes_it_carried(tmp_path: Path) -> None:
    gw, stranger = SimulatedGateway("gw-1"), SimulatedGateway("gw-1")
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    core.enrol(registered(gw.key, "gw-1"))
    assert core.receive(Arrival(stranger.batch(), "gw-1", NOW)).result is QuarantineReason.UNKNOWN_KEY
    assert core.receive(Arrival(stranger.batch(), "gw-2", NOW)).result is QuarantineReason.NOT_ENROLLED
    rows = store.quarantined()
    assert [(r.reason, r.kid) for r in rows] == [
        (QuarantineReason.UNKNOWN_KEY, stranger.kid[:4]),
        (QuarantineReason.NOT_ENROLLED, stranger.kid[:4]),
    ]
    assert f"kid {stranger.kid[:4].hex()}: unknown_key" in rows[0].detail
    assert core.enrol(registered(stranger.key, "gw-1")) == 1  # the hint finds the key enrolled now


@pytest.mark.parametrize("other_gateway", ["gw-2", "gw-1"])
def test_registration_refuses_a_key_whose_hint_a_registered_key_has(
    tmp_path: Path, other_gateway: str
) -> None:
    """Another gateway's key, or the same gateway's older one: compact envelopes could not tell them
    apart, so the second is refused and the gateway must generate a new key."""
    first, second = keys_sharing_a_hint()
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    core.enrol(registered(first, "gw-1"))
    with pytest.raises(KidHintTaken) as refused:
        core.enrol(registered(second, other_gateway))
    assert isinstance(refused.value, ConfigError)
    for named in (wire.kid_for(first.public_key()).hex(), wire.kid_for(second.public_key()).hex(), "new key"):
        assert named in str(refused.value)
    keys = store.keys()
    assert [k.kid for k in keys] == [wire.kid_for(first.public_key())]
    # the registered key's batches go on verifying by their hint
    assert core.receive(Arrival(gateway_with(first).batch(), "gw-1", NOW)).result is Outcome.STORED


def test_a_rollover_to_a_key_with_a_taken_hint_is_refused_and_the_old_key_kept(tmp_path: Path) -> None:
    first, second = keys_sharing_a_hint()
    holder, gw = gateway_with(first, "gw-1"), SimulatedGateway("gw-2")
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    core.enrol(registered(first, "gw-1"))
    core.enrol(registered(gw.key, "gw-2"))
    statement = wire.make_rollover("gw-2", gw.kid, second)
    announcing = wire.sign(gw.body(0, 5, rollover=statement), gw.key, gw.kid)
    assert core.receive(Arrival(announcing, "gw-2", NOW)).result is Outcome.STORED  # stored, key not enrolled
    keys = store.keys()
    assert sorted(k.gateway_id for k in keys) == ["gw-1", "gw-2"]
    assert core.receive(Arrival(holder.batch(), "gw-1", NOW)).result is Outcome.STORED


def test_cli_names_the_clash_and_revokes_by_the_hint_quarantine_list_shows(tmp_path: Path) -> None:
    first, second = keys_sharing_a_hint()
    db = tmp_path / "received.db"
    runner = CliRunner()
    pems = []
    for n, key in enumerate((first, second)):
        pem = tmp_path / f"{n}.pem"
        pem.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        pems.append(str(pem))
    assert runner.invoke(main, ["receiver", "keys", "add", "gw-1", pems[0], "--db", str(db)]).exit_code == 0
    clash = runner.invoke(main, ["receiver", "keys", "add", "gw-2", pems[1], "--db", str(db)])
    assert clash.exit_code == 1 and "Traceback" not in clash.output
    assert "'gw-1'" in clash.output and "'gw-2'" in clash.output and "generate a new key" in clash.output
    hint = wire.kid_for(first.public_key())[:4].hex()
    revoked = runner.invoke(main, ["receiver", "keys", "revoke", hint, "--db", str(db)])
    assert revoked.exit_code == 0, revoked.output
    assert f"revoked kid {wire.kid_for(first.public_key()).hex()} of gw-1" in revoked.output
    listed = runner.invoke(main, ["receiver", "keys", "list", "--db", str(db), "--json"])
    assert [json.loads(line)["revoked"] != "-" for line in listed.output.splitlines()] == [True]
    unknown = runner.invoke(main, ["receiver", "keys", "revoke", "00000000", "--db", str(db)])
    assert unknown.exit_code == 1 and "no registered key" in unknown.output


def _as_schema_version_3(db: Path) -> None:
    """The keys table as schema version 3 had it: no hint column, no index on it."""
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "DROP INDEX keys_by_hint; ALTER TABLE keys DROP COLUMN hint; PRAGMA user_version = 3;"
        )


def test_an_upgraded_database_finds_its_keys_by_hint_except_ones_that_already_shared_one(
    tmp_path: Path,
) -> None:
    """Keys registered before schema version 4 could share a hint (nothing refused it then): the upgrade
    keeps both and their tagged batches verify; compact batches naming that hint wait in the quarantine
    until one gateway has a new key. Every other key is found by its hint."""
    first, second = keys_sharing_a_hint()
    other = SimulatedGateway("gw-3")
    db = tmp_path / "received.db"
    store = SqliteStore(db)
    store.add_key(registered(other.key, "gw-3"))
    store.close()
    _as_schema_version_3(db)
    with sqlite3.connect(db) as conn:  # as a version-3 receiver registered them
        for key, gateway_id in ((first, "gw-1"), (second, "gw-2")):
            k = registered(key, gateway_id)
            conn.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?)",
                (k.kid, k.gateway_id, k.public_key, NOW, "cli", None),
            )
    store = SqliteStore(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (4,)
    assert store.key(other.kid[:4]) is not None and store.key(wire.kid_for(first.public_key())[:4]) is None
    core = ReceiverCore(store)
    old_agent = gateway_with(first, "gw-1")
    tagged = wire.sign(old_agent.body(0, 5), first, old_agent.kid, wire.Envelope.TAGGED)
    assert core.receive(Arrival(tagged, "gw-1", NOW)).result is Outcome.STORED
    verdict = core.receive(Arrival(old_agent.batch(), "gw-1", NOW))
    assert (
        verdict.result is QuarantineReason.UNKNOWN_KEY
        and "more than one registered key starts with" in verdict.detail
    )
    assert core.receive(Arrival(other.batch(), "gw-3", NOW)).result is Outcome.STORED
    with pytest.raises(KidHintTaken):  # a third key with that hint is refused as well
        store.add_key(
            RegisteredKey(wire.kid_for(first.public_key())[:4] + bytes(4), "gw-4", bytes(32), NOW, "cli")
        )
