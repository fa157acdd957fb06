"""What the receiver needs from a database: the `ReceiverStore` protocol and the values it exchanges.

Two implementations: `SqliteStore` (gateway/receiver/sqlite.py, the embedded default) and the
PostgreSQL store. The receiver core (gateway/receiver/core.py) is the only caller; it verifies
batches, decides what is quarantined and calls a store from ONE worker thread at a time (a store
need not be thread-safe, but must accept being called from different threads in turn).

Contract every implementation keeps (tests/unit/gateway/receiver/ run against each):

- Batch identity is (gateway_id, epoch, seq). `Batch.digest` is the SHA-256 of the signed content:
  two envelopes of the same signed content have the same digest.
- `commit` is the group commit: ALL of its work happens in ONE transaction, and it returns only after
  that transaction is durable (SQLite: synchronous=FULL; PostgreSQL: synchronous_commit on). The
  transports acknowledge (MQTT PUBACK, HTTP 2xx) only after `commit` returned, so a crash before
  the return must leave nothing of the call behind, and a crash after it must lose nothing.
- Any database failure raises `kernel.errors.StorageError` (translate driver exceptions); the
  transaction is then rolled back and the caller retries or answers 503. No other exception escapes
  for database reasons.
- Times are passed in (milliseconds since the epoch), never read from the clock by the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from gateway.wire import KID_HINT_LENGTH, Batch


class Outcome(Enum):
    """What the store made of one verified batch."""

    #: new identity: the batch, its readings, windows, gaps and events are now stored
    STORED = "stored"
    #: identity already stored with the same digest (a resend or a re-enveloped copy): nothing written
    DUPLICATE = "duplicate"
    #: identity already stored with ANOTHER digest: nothing written (the caller rejects it)
    REPLAY = "replay"


class QuarantineReason(Enum):
    """Why bytes were kept aside instead of stored as readings.

    The first five are *retryable*: the bytes are well-formed and may verify later (a key enrolled,
    a receiver upgraded, a batch declaring the catalogue arrived); they are kept whole and without a count limit, deduplicated on their content
    digest. The others are *rejected*: bad bytes kept for forensics only, bounded by count and with
    their bytes truncated (`SqliteStore.REJECTED_KEEP`, `REJECTED_MAX_BYTES`).
    """

    UNKNOWN_KEY = "unknown_key"  # the gateway is enrolled, but not with this kid
    NOT_ENROLLED = "not_enrolled"  # no key at all for the gateway the transport names
    REVOKED = "revoked"  # the kid was revoked (`gateway receiver keys revoke`)
    UNSUPPORTED_VERSION = "unsupported_version"  # a wire format version this receiver cannot read
    #: verified, but refers to a series catalogue not held for its gateway (docs/wire-format.md 3.5)
    CATALOGUE_UNKNOWN = "catalogue_unknown"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    TOPIC_MISMATCH = "topic_mismatch"  # signed for another gateway than the topic or URL names
    REPLAY = "replay"

    @property
    def retryable(self) -> bool:
        """Whether re-verification may succeed later (and the bytes are kept whole)."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {
        QuarantineReason.UNKNOWN_KEY,
        QuarantineReason.NOT_ENROLLED,
        QuarantineReason.REVOKED,
        QuarantineReason.UNSUPPORTED_VERSION,
        QuarantineReason.CATALOGUE_UNKNOWN,
    }
)


@dataclass(frozen=True)
class VerifiedBatch:
    """A batch that verified, with the exact bytes that arrived (kept as the audit record)."""

    batch: Batch
    blob: bytes
    received_ms: int


@dataclass(frozen=True)
class QuarantineEntry:
    """Bytes to keep aside. `digest` is the content digest when the envelope parsed (else None);
    `gateway_id` is the gateway the transport named (topic or URL), `kid` the envelope's kid if any."""

    blob: bytes
    reason: QuarantineReason
    detail: str
    received_ms: int
    gateway_id: str | None = None
    kid: bytes | None = None
    digest: bytes | None = None


@dataclass(frozen=True)
class QuarantinedBatch:
    """A quarantine row as listed: `size` is the length that arrived, `blob` what was kept of it."""

    id: int
    received_ms: int
    reason: QuarantineReason
    detail: str
    gateway_id: str | None
    kid: bytes | None
    size: int
    blob: bytes

    #: the columns both stores select, in this order
    COLUMNS = "id, received_ms, reason, detail, gateway_id, kid, size, blob"

    @classmethod
    def from_row(cls, r: Sequence[Any]) -> QuarantinedBatch:
        """A row of `SELECT {COLUMNS} FROM quarantine` (either store)."""
        return cls(
            id=r[0], received_ms=r[1], reason=QuarantineReason(r[2]), detail=r[3], gateway_id=r[4],
            kid=None if r[5] is None else bytes(r[5]), size=r[6], blob=bytes(r[7]),
        )  # fmt: skip


def kid_column(kid: bytes) -> str:
    """The keys table's column that finds `kid`: `hint` for a compact envelope's 4 bytes, else `kid`."""
    return "hint" if len(kid) == KID_HINT_LENGTH else "kid"


@dataclass(frozen=True)
class RegisteredKey:
    """A public key in the receiver's key registry."""

    kid: bytes
    gateway_id: str
    #: 32 raw Ed25519 public key bytes
    public_key: bytes
    added_ms: int
    #: "cli", "import" (the --keys directory) or "rollover" (enrolled by a verified rollover statement)
    source: str
    revoked_ms: int | None = None


class ReceiverStore(Protocol):
    """The receiver's database. See the module docstring for the contract."""

    def commit(
        self,
        batches: Sequence[VerifiedBatch],
        quarantine: Sequence[QuarantineEntry] = (),
        release: Sequence[int] = (),
    ) -> list[Outcome]:
        """Store `batches` and `quarantine` and delete the quarantine rows `release` in ONE durable
        transaction; one Outcome per batch, in order.

        Per batch, by identity (gateway_id, epoch, seq): absent -> insert the `batches` row (with the
        kid, digest, created/received times, readings count and the blob as the audit record) and all
        its readings, windows (upsert: a higher `rev` replaces the stored row of the same gateway,
        sensor, quantity, window_start, window_ms; a lower or equal one is ignored), gaps and events,
        all tagged with gateway_id, epoch and seq: STORED. Present with the same digest: DUPLICATE.
        Present with another digest: REPLAY. Two batches of one call with the same identity are
        judged in order (the second is then DUPLICATE or REPLAY). NaN values are stored as NULL.

        Per verified batch that declares a series catalogue (`Batch.catalogue_table` not empty),
        whatever its outcome: keep the table under (gateway_id, catalogue) unless one is kept there.

        Per quarantine entry: a retryable one is inserted unless a retryable row with the same
        non-None digest is already there; a rejected one is inserted with its blob cut to the size
        limit, and the oldest rejected rows beyond the count limit are deleted.
        """
        ...

    def quarantined(
        self, *, gateway_id: str | None = None, retryable_only: bool = False, limit: int = 1000
    ) -> list[QuarantinedBatch]:
        """Quarantine rows, oldest first (optionally of one gateway, or retryable ones only)."""
        ...

    def catalogue(self, gateway_id: str, catalogue: bytes) -> bytes | None:
        """The series table (deterministic CBOR) a verified batch of `gateway_id` declared as
        `catalogue`, or None when none did."""
        ...

    def add_key(self, key: RegisteredKey) -> bool:
        """Register a key; True if added, False if this kid was already registered for this gateway
        (nothing changes, a revoked key stays revoked). ConfigError when the kid belongs to another
        gateway; KidHintTaken (a ConfigError) when another registered key, of any gateway, starts with
        the same 4 bytes (`wire.hint_taken` words it). Durable on return."""
        ...

    def keys(self, gateway_id: str | None = None) -> list[RegisteredKey]:
        """Registered keys (revoked ones included), ordered by gateway id then added time."""
        ...

    def key(self, kid: bytes) -> RegisteredKey | None:
        """The key registered under `kid` (its 8 bytes, or the 4-byte hint a compact envelope
        carries), revoked or not; None when there is none."""
        ...

    def revoke_key(self, kid: bytes, revoked_ms: int) -> None:
        """Mark a key revoked, named by kid or hint (idempotent: an earlier revocation time is kept);
        UnknownKey if absent."""
        ...

    def count_readings(self, gateway_id: str | None = None) -> int:
        """How many readings are stored (of one gateway, or all)."""
        ...

    def close(self) -> None:
        """Release the connection(s)."""
        ...
