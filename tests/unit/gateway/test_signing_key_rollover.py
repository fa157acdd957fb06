"""`gateway keys rotate` -> the agent's next batch, signed by the old key, announces the new one."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from buffer import Store, StoreOptions
from gateway import wire
from gateway.batcher import Batcher
from gateway.receiver import Arrival, Outcome, ReceiverCore, RegisteredKey, SqliteStore
from gateway.sealing import Due, SealingRules
from gateway.signing_key import (
    PRIVATE_NAME,
    PUBLIC_NAME,
    ROLLOVER_PENDING,
    generate_keypair,
    load_private_key,
    pending_rollover,
    rotate_keypair,
)
from hil.fleet import keys_sharing_a_hint
from kernel.model import Reading

T0 = 1_780_000_000_000


def test_rotate_marks_the_rollover_from_the_kid_the_backend_knows_even_after_two_rotations(
    tmp_path: Path,
) -> None:
    private_path, _ = generate_keypair(tmp_path)
    known = wire.kid_for(load_private_key(private_path).public_key())
    assert pending_rollover(private_path, "gw-1") is None
    rotate_keypair(tmp_path)
    rotate_keypair(tmp_path)  # before the agent sealed a batch
    pending = pending_rollover(private_path, "gw-1")
    assert pending is not None and pending.old_kid == known
    new_raw = load_private_key(private_path).public_key().public_bytes_raw()
    assert pending.statement.new_public_key == new_raw
    pending.complete()
    assert not (tmp_path / ROLLOVER_PENDING).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_rotate_as_root_keeps_the_owner_and_modes_of_the_key_files(tmp_path: Path) -> None:
    generate_keypair(tmp_path)
    for name, mode in ((PRIVATE_NAME, 0o600), (PUBLIC_NAME, 0o644)):
        os.chown(tmp_path / name, 4321, 4322)  # the service user, say
        os.chmod(tmp_path / name, mode)
    rotate_keypair(tmp_path)
    for name, mode in ((PRIVATE_NAME, 0o600), (PUBLIC_NAME, 0o644), (ROLLOVER_PENDING, 0o600)):
        info = (tmp_path / name).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (4321, 4322, mode), name
    assert (tmp_path / "previous").stat().st_uid == 4321


def seal(store: Store, batcher: Batcher, ts: int) -> bytes:
    store.submit([Reading("dust-1", "pm10", ts, 1.0, "ug/m3")])
    store.flush_blocking(5)
    before = {e.seq for e in store.undelivered(limit=1000)}
    asyncio.run(batcher.seal(upto_ts_ms=None))
    (new,) = [e for e in store.undelivered(limit=1000) if e.seq not in before]
    return new.blob


def batcher_for(store: Store, key_file: Path) -> Batcher:
    key = load_private_key(key_file)
    return Batcher(
        store, gateway_id="gw-1", private_key=key, kid=wire.kid_for(key.public_key()), declare=wire.SeriesInfo,
        due=Due(SealingRules(max_delay_ms=1000, target_readings=1000)), max_readings=1000, sealed=asyncio.Event(),
        rollover=pending_rollover(key_file, "gw-1"),
    )  # fmt: skip


def test_after_a_rotation_and_a_restart_the_backend_learns_the_new_key_from_the_next_batch(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    key_file, _ = generate_keypair(keys)
    old = load_private_key(key_file).public_key()
    received = SqliteStore(tmp_path / "received.db")
    backend = ReceiverCore(received)
    backend.enrol(RegisteredKey(wire.kid_for(old), "gw-1", old.public_bytes_raw(), T0, "cli"))
    store = Store.open(tmp_path / "buffer.db", StoreOptions(commit_interval_s=0.01))
    rotate_keypair(keys)
    batcher = batcher_for(store, key_file)  # the agent restarted after the rotation
    new_kid = wire.kid_for(load_private_key(key_file).public_key()).hex()
    assert (batcher.statistics().kid, batcher.statistics().rollover_pending) == (new_kid, True)
    announcing, after = seal(store, batcher, T0), seal(store, batcher, T0 + 1000)
    assert batcher.statistics().rollover_pending is False
    store.close()
    assert not (keys / ROLLOVER_PENDING).exists()
    # one group commit: the second is judged before the first enrolled its key, and released after
    verdicts = backend.receive_many([Arrival(b, "gw-1", T0) for b in (announcing, after)])
    assert verdicts[0].result is Outcome.STORED
    assert received.count_readings("gw-1") == 2 and received.quarantined() == []
    assert wire.verify_with_key(announcing, old, gateway_id="gw-1").rollover is not None


def test_rotate_never_gives_the_gateway_a_key_with_the_hint_of_one_it_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend refuses a key whose first 4 kid bytes a registered key has (docs/wire-format.md 7): a
    rotation that drew one (odds 2^-32, so the draw is forced here) draws again."""
    first, second = keys_sharing_a_hint()
    private_path, public_path = generate_keypair(tmp_path)
    private_path.write_bytes(first.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public_path.write_bytes(first.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    draws = iter([second, Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)])
    monkeypatch.setattr(Ed25519PrivateKey, "generate", staticmethod(lambda: next(draws)))
    _, _, old_kid = rotate_keypair(tmp_path)
    new_kid = wire.kid_for(load_private_key(private_path).public_key())
    assert old_kid == wire.kid_for(first.public_key())
    assert new_kid == wire.kid_for(Ed25519PrivateKey.from_private_bytes(b"\x09" * 32).public_key())
    assert new_kid[:4] != old_kid[:4]
