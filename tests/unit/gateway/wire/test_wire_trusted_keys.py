"""Loading a backend's directory of gateway public keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.public_key_files import load_key_directory
from gateway.wire import Keyring, kid_for
from hil.fleet import keys_sharing_a_hint
from kernel.errors import ConfigError, KidHintTaken, UnknownKey


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


def test_a_key_is_found_by_its_kid_or_by_its_4_byte_hint() -> None:
    ring, key = Keyring(), Ed25519PrivateKey.generate().public_key()
    kid = ring.add("gw-1", key)
    assert ring.trusted(kid).gateway_id == ring.trusted(kid[:4]).gateway_id == "gw-1"
    assert kid in ring and kid[:4] in ring
    assert kid[:5] not in ring and bytes(4) not in ring
    with pytest.raises(UnknownKey, match="00000000"):
        ring.trusted(bytes(4))
    ring.retire(kid[:4])
    with pytest.raises(UnknownKey, match=f"{kid.hex()} of gateway 'gw-1' is retired"):
        ring.trusted(kid[:4])


def test_a_key_whose_hint_another_gateways_key_has_is_refused_naming_both() -> None:
    first, second = (k.public_key() for k in keys_sharing_a_hint())
    assert kid_for(first) != kid_for(second) and kid_for(first)[:4] == kid_for(second)[:4]
    ring = Keyring()
    ring.add("gw-a", first)
    with pytest.raises(KidHintTaken) as refused:
        ring.add("gw-b", second)
    message = str(refused.value)
    for named in ("'gw-a'", "'gw-b'", kid_for(first).hex(), kid_for(second).hex(), "generate a new key"):
        assert named in message
    assert ring.trusted(kid_for(first)[:4]).gateway_id == "gw-a"  # the registered key is unchanged
    assert len(ring) == 1


def test_the_same_gateways_second_key_with_its_old_keys_hint_is_refused_too() -> None:
    first, second = (k.public_key() for k in keys_sharing_a_hint())
    ring = Keyring()
    ring.add("gw-a", first, retired=True)
    with pytest.raises(KidHintTaken, match="its own older key"):
        ring.add("gw-a", second)
    assert ring.add("gw-a", first) == kid_for(first)  # the same key again is no clash
