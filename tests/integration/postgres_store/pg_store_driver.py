"""A minimal receiver for the kill -9 loop: verify queued batches, group-commit them into the PostgreSQL
store, and only then acknowledge them (one line per commit in an append-only ack file), the way the MQTT
transport acknowledges after the commit.

Usage: python pg_store_driver.py DSN QUEUE_JSON ACK_FILE SEED [DIE_IN_COMMIT]
QUEUE_JSON: {"keys": {gateway_id: raw public key hex}, "batches": {index: blob hex}}
DIE_IN_COMMIT: N > 0 makes the process SIGKILL itself inside its N-th group commit, after the readings
went in and before COMMIT (an external kill -9 lands there only by chance).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway import wire
from gateway.receiver.postgres import PostgresStore
from gateway.receiver.postgres import store as postgres_store
from gateway.receiver.postgres.contents import Claimed
from gateway.receiver.store import VerifiedBatch

GROUP = 8


def die_in_commit(n: int) -> None:
    """Kill this process with SIGKILL right after the readings of its n-th group commit were written."""
    commits = itertools.count(1)
    write_contents = postgres_store.write_contents

    def write_then_die(conn: object, stored: list[Claimed]) -> None:
        write_contents(conn, stored)  # type: ignore[arg-type]
        if next(commits) == n:
            os.kill(os.getpid(), signal.SIGKILL)

    postgres_store.write_contents = write_then_die  # type: ignore[assignment]


def main(dsn: str, queue_path: str, ack_path: str, seed: str, die_in: str = "0") -> None:
    if int(die_in):
        die_in_commit(int(die_in))
    queue = json.loads(Path(queue_path).read_text())
    keyring = wire.Keyring()
    for gateway_id, raw in queue["keys"].items():
        keyring.add(gateway_id, Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw)))
    pending = [(int(i), bytes.fromhex(blob)) for i, blob in queue["batches"].items()]
    random.Random(seed).shuffle(pending)  # each receiver gets the redelivered batches in its own order
    store = PostgresStore(dsn)
    with open(ack_path, "a", buffering=1) as acks:
        for start in range(0, len(pending), GROUP):
            group = pending[start : start + GROUP]
            items = [VerifiedBatch(wire.verify_and_decode(blob, keyring), blob, 0) for _, blob in group]
            outcomes = store.commit(items)
            # one write per line: a kill lands before or after it, never inside
            acks.write(" ".join(f"{i}:{o.value}" for (i, _), o in zip(group, outcomes, strict=True)) + "\n")
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
