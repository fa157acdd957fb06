"""The PostgreSQL store's quarantine and key registry (the same rules as the SQLite store's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection
from psycopg.rows import TupleRow

from gateway.receiver.postgres.contents import text
from gateway.receiver.store import QuarantinedBatch, QuarantineEntry, RegisteredKey, VerifiedBatch, kid_column
from gateway.wire import hint_taken, kid_hint
from kernel.errors import ConfigError, UnknownKey

#: rejected (non-retryable) quarantine rows kept, the oldest deleted beyond it (as the SQLite store)
REJECTED_KEEP = 1000
#: bytes kept of a rejected blob: enough to see what it was, 1000 of them stay under 64 MB
REJECTED_MAX_BYTES = 64 * 1024

_KEY_COLUMNS = "kid, gateway_id, public_key, added_ms, source, revoked_ms"


def keep_catalogues(conn: Connection[TupleRow], items: Sequence[VerifiedBatch]) -> None:
    """Keep the series tables these verified batches declare (a declared catalogue never changes:
    its id is the hash of its table), inside the caller's transaction. One pipelined statement for the
    group: a statement per declaring batch took the store alone from 1.1-1.3 to 2.2-2.4 us of CPU a
    reading (`bench/receiver_pg_bench.py`, every batch declaring)."""
    rows = {
        (item.batch.gateway_id, item.batch.catalogue): (item.batch.catalogue_table, item.received_ms)
        for item in items
        if item.batch.catalogue_table
    }
    if rows:
        conn.cursor().executemany(
            "INSERT INTO catalogues VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(text(gateway_id), catalogue, *rest) for (gateway_id, catalogue), rest in rows.items()],
        )


def catalogue(conn: Connection[TupleRow], gateway_id: str, catalogue_id: bytes) -> bytes | None:
    """The series table `gateway_id` declared as `catalogue_id`, or None."""
    row = conn.execute(
        "SELECT series_table FROM catalogues WHERE gateway_id = %s AND catalogue = %s",
        (text(gateway_id), catalogue_id),
    ).fetchone()
    return None if row is None else bytes(row[0])


def quarantine(conn: Connection[TupleRow], entries: Sequence[QuarantineEntry]) -> None:
    """Keep these entries aside, inside the caller's transaction: a retryable one unless the same
    content is already waiting, a rejected one cut to REJECTED_MAX_BYTES and the oldest beyond
    REJECTED_KEEP dropped."""
    for entry in entries:
        retryable = entry.reason.retryable
        conn.execute(
            "INSERT INTO quarantine (received_ms, reason, retryable, detail, gateway_id, kid, digest, size,"
            " blob) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (digest) WHERE retryable AND digest IS NOT NULL DO NOTHING",
            (
                entry.received_ms, entry.reason.value, retryable, text(entry.detail),
                None if entry.gateway_id is None else text(entry.gateway_id), entry.kid, entry.digest,
                len(entry.blob), entry.blob if retryable else entry.blob[:REJECTED_MAX_BYTES],
            ),
        )  # fmt: skip
    if any(not e.reason.retryable for e in entries):
        conn.execute(
            "DELETE FROM quarantine WHERE NOT retryable AND id < (SELECT min(id) FROM"
            " (SELECT id FROM quarantine WHERE NOT retryable ORDER BY id DESC LIMIT %s) AS kept)",
            (REJECTED_KEEP,),
        )


def quarantined(
    conn: Connection[TupleRow], gateway_id: str | None, retryable_only: bool, limit: int
) -> list[QuarantinedBatch]:
    """Quarantine rows, oldest first."""
    rows = conn.execute(
        f"SELECT {QuarantinedBatch.COLUMNS} FROM quarantine"
        " WHERE (%s::text IS NULL OR gateway_id = %s) AND (retryable OR NOT %s) ORDER BY id LIMIT %s",
        (gateway_id, gateway_id, retryable_only, limit),
    ).fetchall()
    return [QuarantinedBatch.from_row(r) for r in rows]


def release(conn: Connection[TupleRow], ids: Sequence[int]) -> None:
    """Delete these quarantine rows (inside the caller's transaction)."""
    if ids:
        conn.execute("DELETE FROM quarantine WHERE id = ANY(%s::bigint[])", (list(ids),))


def add_key(conn: Connection[TupleRow], key: RegisteredKey) -> bool:
    """Register a key (False when already registered for this gateway; ConfigError for another,
    KidHintTaken when another key has its hint)."""
    hint = kid_hint(key.kid)
    with conn.transaction():
        row = conn.execute("SELECT gateway_id FROM keys WHERE kid = %s", (key.kid,)).fetchone()
        if row is None:
            # by the kid's bytes, not the hint column: a hint left NULL by the upgrade is taken too
            holder = conn.execute(
                "SELECT kid, gateway_id FROM keys WHERE substring(kid FROM 1 FOR 4) = %s", (hint,)
            ).fetchone()
            if holder is not None:
                raise hint_taken(key.gateway_id, key.kid, holder[1], bytes(holder[0]))
            # a receiver registering the same kid meanwhile: nothing added, told apart below; one
            # registering another key with this hint meanwhile: the unique index refuses ours
            added = conn.execute(
                f"INSERT INTO keys ({_KEY_COLUMNS}, hint) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (kid) DO NOTHING RETURNING kid",
                (key.kid, key.gateway_id, key.public_key, key.added_ms, key.source, key.revoked_ms, hint),
            ).fetchone()
            if added is not None:
                return True
            row = conn.execute("SELECT gateway_id FROM keys WHERE kid = %s", (key.kid,)).fetchone()
    if row is not None and row[0] != key.gateway_id:
        raise ConfigError(
            f"key {key.kid.hex()} is already registered for gateway {row[0]!r},"
            f" refusing to register it for {key.gateway_id!r}"
        )
    return False


def keys(conn: Connection[TupleRow], gateway_id: str | None) -> list[RegisteredKey]:
    """Registered keys, by gateway then added time."""
    rows = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM keys WHERE %s::text IS NULL OR gateway_id = %s"
        " ORDER BY gateway_id, added_ms, kid",
        (gateway_id, gateway_id),
    ).fetchall()
    return [_key(r) for r in rows]


def key(conn: Connection[TupleRow], kid: bytes) -> RegisteredKey | None:
    """The key registered under `kid` (8 bytes, or its 4-byte hint), or None."""
    row = conn.execute(f"SELECT {_KEY_COLUMNS} FROM keys WHERE {kid_column(kid)} = %s", (kid,)).fetchone()
    return None if row is None else _key(row)


def revoke_key(conn: Connection[TupleRow], kid: bytes, revoked_ms: int) -> None:
    """Mark a key revoked (an earlier revocation time is kept); UnknownKey when there is none."""
    with conn.transaction():
        changed = conn.execute(
            f"UPDATE keys SET revoked_ms = coalesce(revoked_ms, %s) WHERE {kid_column(kid)} = %s",
            (revoked_ms, kid),
        ).rowcount
    if not changed:
        raise UnknownKey(f"no registered key with kid {kid.hex()}")


def _key(row: tuple[Any, ...]) -> RegisteredKey:
    kid, gateway_id, public_key, added_ms, source, revoked_ms = row
    return RegisteredKey(bytes(kid), gateway_id, bytes(public_key), added_ms, source, revoked_ms)
