"""The receiver's key registry as the judging thread sees it: an immutable snapshot, found by kid."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway import wire
from gateway.receiver.store import RegisteredKey


@dataclass(frozen=True)
class KeySnapshot:
    """A snapshot of the key registry: replaced whole on every change, never mutated, so a judging
    thread can read it while the committing thread enrols a key.

    Keys are found by their 8-byte kid (tagged envelopes) or by its first 4 bytes (compact ones).
    Registration refuses a second key with the same 4 bytes; a hint two keys already shared when the
    store was upgraded (docs/wire-format.md 7) finds neither of them, and is counted in `shared_hints`."""

    keys: dict[bytes, RegisteredKey]
    public: dict[bytes, Ed25519PublicKey]
    gateways: frozenset[str]
    #: kid hint -> the 8-byte kid of the one key with it
    by_hint: dict[bytes, bytes]
    #: hints more than one registered key has (found by no compact envelope)
    shared_hints: frozenset[bytes]

    @classmethod
    def of(cls, keys: dict[bytes, RegisteredKey]) -> KeySnapshot:
        """The snapshot of these keys (by 8-byte kid)."""
        public = {kid: Ed25519PublicKey.from_public_bytes(k.public_key) for kid, k in keys.items()}
        hints = Counter(wire.kid_hint(kid) for kid in keys)
        return cls(
            keys,
            public,
            frozenset(k.gateway_id for k in keys.values()),
            {wire.kid_hint(kid): kid for kid in keys if hints[wire.kid_hint(kid)] == 1},
            frozenset(hint for hint, n in hints.items() if n > 1),
        )

    def with_key(self, key: RegisteredKey) -> KeySnapshot:
        """This snapshot and `key`."""
        return KeySnapshot.of({**self.keys, key.kid: key})

    def find(self, kid: bytes) -> RegisteredKey | None:
        """The key an envelope's kid names: its 8-byte kid or its 4-byte hint; None when none does."""
        if len(kid) == wire.KID_HINT_LENGTH:
            full = self.by_hint.get(kid)
            return None if full is None else self.keys[full]
        return self.keys.get(kid) if len(kid) == wire.KID_LENGTH else None
