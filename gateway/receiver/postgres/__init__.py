"""The receiver's PostgreSQL store: `gateway receiver --db postgresql://...` (docs/receiver-postgres.md)."""

from gateway.receiver.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
