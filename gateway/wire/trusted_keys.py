"""The public keys a backend trusts: which gateway owns which key id, and which keys are retired.

Pure, as all of gateway/wire: the PEM files a keyring is filled from are read by gateway/public_key_files.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kernel.errors import ConfigError, UnknownKey

#: length of a key id in bytes
KID_LENGTH = 8


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
