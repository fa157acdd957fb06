"""What a store seals, recorded as it is sealed, for tests that deliver batches while they seal them."""

from __future__ import annotations

from typing import Any

from buffer import Store


def record_seals(store: Store) -> list[bytes]:
    """The signed blobs `store` seals from now on, in order, appended as each is sealed.

    Reading the outbox after a seal instead misses a batch that an uplink on loopback has already
    sent and marked delivered meanwhile (the topic alias test read 5 blobs of 6 in 1 of 16 runs here).
    """
    blobs: list[bytes] = []
    seal_batch = store.seal_batch

    def recording_seal(seq: int, blob: bytes, *args: Any, **kwargs: Any) -> None:
        seal_batch(seq, blob, *args, **kwargs)
        blobs.append(blob)  # once stored: a seal the store refuses is not a batch

    store.seal_batch = recording_seal  # type: ignore[method-assign]
    return blobs
