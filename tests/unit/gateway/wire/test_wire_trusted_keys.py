"""Loading a backend's directory of gateway public keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.public_key_files import load_key_directory
from gateway.wire import Keyring, kid_for
from kernel.errors import ConfigError, UnknownKey


def write_pem(path: Path) -> Ed25519PublicKey:
    public = Ed25519PrivateKey.generate().public_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return public


def test_flat_and_per_gateway_layouts_with_retired_keys(tmp_path: Path) -> None:
    flat = write_pem(tmp_path / "gw-1.pem")
    current = write_pem(tmp_path / "gw.2" / "2026-11.pem")
    old = write_pem(tmp_path / "gw.2" / "2026-05.retired.pem")
    flat_old = write_pem(tmp_path / "gw-1.retired.pem")
    (tmp_path / "README.txt").write_text("not a key")
    ring = load_key_directory(tmp_path)
    assert len(ring) == 4
    assert ring.trusted(kid_for(flat)).gateway_id == "gw-1"
    assert ring.trusted(kid_for(current)).gateway_id == "gw.2"
    for retired in (old, flat_old):
        with pytest.raises(UnknownKey, match="retired"):
            ring.trusted(kid_for(retired))


def test_a_file_that_is_no_public_key_names_itself(tmp_path: Path) -> None:
    (tmp_path / "gw-1.pem").write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match=r"gw-1\.pem"):
        load_key_directory(tmp_path)


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_key_directory(tmp_path / "nowhere")


def test_retiring_an_unknown_kid_is_unknown() -> None:
    with pytest.raises(UnknownKey):
        Keyring().retire(b"\x00" * 8)
