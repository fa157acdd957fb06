"""The public keys a backend trusts: which gateway owns which key id, and which keys are retired."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kernel.errors import ConfigError, UnknownKey

#: length of a key id in bytes
KID_LENGTH = 8
#: a public key file in a directory loaded by `Keyring.load_dir` is retired when its name ends so
RETIRED_SUFFIX = ".retired.pem"


def kid_for(public_key: Ed25519PublicKey) -> bytes:
    """The key id of a public key: the first 8 bytes of SHA-256 over its 32 raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KID_LENGTH]


@dataclass(frozen=True)
class TrustedKey:
    """A registered public key and the gateway it speaks for."""

    gateway_id: str
    public_key: Ed25519PublicKey
    retired: bool


class Keyring:
    """Public keys per gateway, by kid; a rotated-out key is accepted until it is retired."""

    def __init__(self) -> None:
        self._keys: dict[bytes, TrustedKey] = {}

    def add(self, gateway_id: str, public_key: Ed25519PublicKey, *, retired: bool = False) -> bytes:
        """Register `public_key` for `gateway_id` and return its kid."""
        kid = kid_for(public_key)
        known = self._keys.get(kid)
        if known is not None and known.gateway_id != gateway_id:
            raise ConfigError(
                f"key {kid.hex()} is already registered for gateway {known.gateway_id!r},"
                f" refusing to register it for {gateway_id!r}"
            )
        self._keys[kid] = TrustedKey(gateway_id, public_key, retired)
        return kid

    def retire(self, kid: bytes) -> None:
        """Stop accepting batches signed with `kid` (after a rotation, once the backlog is in)."""
        known = self._keys.get(kid)
        if known is None:
            raise UnknownKey(f"no key {kid.hex()} to retire")
        self._keys[kid] = TrustedKey(known.gateway_id, known.public_key, retired=True)

    def trusted(self, kid: bytes) -> TrustedKey:
        """The active key registered under `kid`; UnknownKey when there is none or it is retired."""
        known = self._keys.get(kid)
        if known is None:
            raise UnknownKey(f"no registered key with kid {kid.hex()}")
        if known.retired:
            raise UnknownKey(f"key {kid.hex()} of gateway {known.gateway_id!r} is retired")
        return known

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    @classmethod
    def load_dir(cls, path: Path) -> Keyring:
        """Load public key PEM files: `<gateway-id>.pem` or `<gateway-id>/<any name>.pem`.

        A file whose name ends in `.retired.pem` is registered as retired.
        """
        if not path.is_dir():
            raise ConfigError(f"key directory {path} does not exist or is not a directory")
        ring = cls()
        for pem in sorted(path.glob("*.pem")):
            ring.add(_gateway_of(pem.name), load_public_pem(pem), retired=_is_retired(pem))
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            for pem in sorted(sub.glob("*.pem")):
                ring.add(sub.name, load_public_pem(pem), retired=_is_retired(pem))
        return ring


def load_public_pem(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a SubjectPublicKeyInfo PEM file (ConfigError when it is not one)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read public key {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, expected an Ed25519 public key")
    return key


def _is_retired(pem: Path) -> bool:
    return pem.name.endswith(RETIRED_SUFFIX)


def _gateway_of(name: str) -> str:
    suffix = RETIRED_SUFFIX if name.endswith(RETIRED_SUFFIX) else ".pem"
    return name[: -len(suffix)]
