"""Transports that carry sealed outbox batches to the backend."""
