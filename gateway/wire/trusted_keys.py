"""The public keys a backend trusts: which gateway owns which key id, and which keys are retired.

A key's identity is its 8-byte kid; the compact envelope names it by the kid's first 4 bytes, its
hint (docs/wire-format.md 7). A keyring therefore never holds two keys with the same hint.
Pure, as all of gateway/wire: the PEM files a keyring is filled from are read by gateway/public_key_files.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kernel.errors import ConfigError, KidHintTaken, UnknownKey

#: length of a key id in bytes
KID_LENGTH = 8
#: length of the kid hint the compact envelope carries: the kid's first bytes. 2^32 hints: among n
#: keys P(any two share one) ~ n^2 / 2^33, 0.01 % for 1,000 keys; registration refuses a shared one
KID_HINT_LENGTH = 4


def kid_for(public_key: Ed25519PublicKey) -> bytes:
    """The key id of a public key: the first 8 bytes of SHA-256 over its 32 raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KID_LENGTH]


def kid_hint(kid: bytes) -> bytes:
    """The 4 bytes of `kid` a compact envelope carries."""
    return bytes(kid[:KID_HINT_LENGTH])


def names_key(received: bytes, kid: bytes) -> bool:
    """Whether an envelope's kid as received (8 bytes, or a compact envelope's 4-byte hint) names
    the key whose kid is `kid`."""
    return len(received) in (KID_LENGTH, KID_HINT_LENGTH) and kid.startswith(received)


def hint_taken(gateway_id: str, kid: bytes, holder_gateway_id: str, holder_kid: bytes) -> KidHintTaken:
    """The error every key registry raises for a key whose hint a registered key already has."""
    holder = f"its own older key {holder_kid.hex()}"
    if holder_gateway_id != gateway_id:
        holder = f"key {holder_kid.hex()} of gateway {holder_gateway_id!r}"
    return KidHintTaken(
        f"key {kid.hex()} of gateway {gateway_id!r} starts with the same 4 bytes ({kid_hint(kid).hex()})"
        f" as {holder}: compact envelopes could not tell them apart. Refused:"
        f" generate a new key on gateway {gateway_id!r} (`gateway keys rotate`, or `init` in an empty"
        " directory) and register that one"
    )


@dataclass(frozen=True)
class TrustedKey:
    """A registered public key and the gateway it speaks for."""

    gateway_id: str
    public_key: Ed25519PublicKey
    retired: bool


class Keyring:
    """Public keys per gateway, by kid or kid hint; a rotated-out key is accepted until it is retired."""

    def __init__(self) -> None:
        self._keys: dict[bytes, TrustedKey] = {}
        self._by_hint: dict[bytes, bytes] = {}

    def add(self, gateway_id: str, public_key: Ed25519PublicKey, *, retired: bool = False) -> bytes:
        """Register `public_key` for `gateway_id` and return its kid; ConfigError when the key is
        another gateway's, KidHintTaken when another registered key has the same hint."""
        kid = kid_for(public_key)
        known = self._keys.get(kid)
        if known is not None and known.gateway_id != gateway_id:
            raise ConfigError(
                f"key {kid.hex()} is already registered for gateway {known.gateway_id!r},"
                f" refusing to register it for {gateway_id!r}"
            )
        holder = self._by_hint.get(kid_hint(kid), kid)
        if holder != kid:
            raise hint_taken(gateway_id, kid, self._keys[holder].gateway_id, holder)
        self._keys[kid] = TrustedKey(gateway_id, public_key, retired)
        self._by_hint[kid_hint(kid)] = kid
        return kid

    def retire(self, kid: bytes) -> None:
        """Stop accepting batches signed with `kid` (or its hint), once the backlog is in."""
        full = self._full_kid(kid)
        if full is None:
            raise UnknownKey(f"no key {kid.hex()} to retire")
        known = self._keys[full]
        self._keys[full] = TrustedKey(known.gateway_id, known.public_key, retired=True)

    def trusted(self, kid: bytes) -> TrustedKey:
        """The active key registered under `kid` (8 bytes, or a 4-byte hint); UnknownKey when there
        is none or it is retired."""
        full = self._full_kid(kid)
        if full is None:
            raise UnknownKey(f"no registered key with kid {kid.hex()}")
        known = self._keys[full]
        if known.retired:
            raise UnknownKey(f"key {full.hex()} of gateway {known.gateway_id!r} is retired")
        return known

    def _full_kid(self, kid: bytes) -> bytes | None:
        if len(kid) == KID_HINT_LENGTH:
            return self._by_hint.get(bytes(kid))
        return bytes(kid) if kid in self._keys else None

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return isinstance(kid, bytes | bytearray) and self._full_kid(bytes(kid)) is not None
