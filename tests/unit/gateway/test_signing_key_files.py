"""The gateway's key files: created private, refused when exposed, rotated without losing the old one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.signing_key import (
    describe,
    generate_keypair,
    load_private_key,
    load_public_key,
    rotate_keypair,
)
from gateway.wire import kid_for
from kernel.errors import ConfigError


def test_generate_writes_a_private_0600_pkcs8_and_a_public_spki(tmp_path: Path) -> None:
    private_path, public_path = generate_keypair(tmp_path / "keys")
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert private_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public_path.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    private = load_private_key(private_path)
    assert kid_for(private.public_key()) == kid_for(load_public_key(public_path))


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    private_path, _ = generate_keypair(tmp_path)
    before = private_path.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        generate_keypair(tmp_path)
    assert private_path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_private_key_readable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    private_path, _ = generate_keypair(tmp_path)
    os.chmod(private_path, mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_private_key(private_path)


def test_a_missing_or_invalid_private_key_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_private_key(tmp_path / "absent.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("garbage")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="not an unencrypted PKCS#8"):
        load_private_key(bad)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_an_unreadable_private_key_is_a_config_error(tmp_path: Path) -> None:
    private_path, _ = generate_keypair(tmp_path)
    private_path.chmod(0o000)
    with pytest.raises(ConfigError, match="cannot read"):
        load_private_key(private_path)


def test_rotate_keeps_the_old_pair_under_previous(tmp_path: Path) -> None:
    _, public_path = generate_keypair(tmp_path)
    old_kid = kid_for(load_public_key(public_path))
    private_path, public_path, rotated_kid = rotate_keypair(tmp_path)
    assert rotated_kid == old_kid
    new_kid = kid_for(load_private_key(private_path).public_key())
    assert new_kid != old_kid
    assert kid_for(load_public_key(tmp_path / "previous" / f"{old_kid.hex()}.pub.pem")) == old_kid
    old_private = tmp_path / "previous" / f"{old_kid.hex()}.key.pem"
    assert stat.S_IMODE(old_private.stat().st_mode) == 0o600
    info = describe(tmp_path)
    assert (info.kid, info.previous_kids) == (new_kid, (old_kid,))


def test_rotate_without_a_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        rotate_keypair(tmp_path)
