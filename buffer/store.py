"""The store-and-forward buffer: what the runtime, the uplink and the CLI call.

Ingest goes through one writer thread (buffer/writer.py); the batching calls (pending, seal_batch,
undelivered, mark_delivered) are blocking and share a second connection under a lock, so the
runtime runs them with asyncio.to_thread. Semantics are written down in docs/buffer.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from buffer import batching, schema, traffic_days, window_replay
from buffer.batching import SeriesNames, StalePending, Token
from buffer.quarantine import is_corruption, open_checked, replace_corrupt
from buffer.records import (
    BatchedReadings,
    OutboxEntry,
    PendingSlice,
    StoreOptions,
    StoreStatistics,
    TrafficDay,
    WindowProgress,
    WindowState,
)
from buffer.tally import Tally
from buffer.writer import Writer, is_full
from kernel.errors import StorageError
from kernel.model import HealthEvent, Reading

T = TypeVar("T")

__all__ = ["StalePending", "Store"]


class Store:
    """A SQLite (WAL) buffer: group-committed readings, an outbox of signed batches, gap records."""

    def __init__(self, path: Path, options: StoreOptions, conn: sqlite3.Connection) -> None:
        self.path = path
        self.options = options
        self._tally = Tally()
        self._lock = threading.Lock()
        #: held while a corrupt database is replaced: submit() never reaches a writer that stopped
        self._swap = threading.Lock()
        self._conn = conn  # batching connection, guarded by _lock
        self._names = SeriesNames()
        self._closed = False
        #: this database's 16 random bytes: every batch sealed from it carries them (batch identity)
        self.epoch = schema.epoch(conn)
        self._tally.pending = _count_pending(conn)
        self._tally.outbox_rows = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self._tally.used_bytes = schema.used_bytes(conn)
        self._writer = Writer(path, schema.connect(path), options, self._tally)

    @classmethod
    def open(cls, path: Path, options: StoreOptions | None = None) -> Store:
        """Open (or create) the buffer at `path` and start its writer thread; blocking.

        A corrupt or unreadable file is moved to <dir>/quarantine/ and a fresh one started; the
        event "buffer.quarantined" is then queued for upload with the next batch. On a disk too
        full to open even a healthy file this waits for space (logged) rather than failing.
        """
        options = options or StoreOptions()
        try:
            conn, quarantined = open_checked(path)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open buffer {path}: {exc}") from exc
        store = cls(path, options, conn)
        store._writer.start()
        if quarantined is not None:
            store._tally.add(quarantined=1)
            store.submit_event(quarantined)
        return store

    # -- ingest ---------------------------------------------------------------------------------

    def submit(self, readings: Sequence[Reading]) -> None:
        """Queue readings for the next group commit; non-blocking, thread-safe."""
        with self._swap:
            self._writer.submit(readings)

    def submit_event(self, event: HealthEvent) -> None:
        """Queue a health event for the next group commit; non-blocking, thread-safe."""
        with self._swap:
            self._writer.submit_event(event)

    async def flush(self) -> None:
        """Return once everything submitted before the call is committed (or raise StorageError)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            # runs on the writer thread: a loop that has closed meanwhile waits for nothing any
            # more, and its RuntimeError must not end the writer (and with it all ingest)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, done, error)

        self._writer.request_flush(settle)
        await done

    def flush_blocking(self, timeout: float | None = None) -> None:
        """flush() for threads and tests without an event loop."""
        finished = threading.Event()
        errors: list[BaseException] = []

        def settle(error: BaseException | None) -> None:
            if error is not None:
                errors.append(error)
            finished.set()

        self._writer.request_flush(settle)
        if not finished.wait(timeout):
            raise StorageError("flush timed out")
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the connections; blocking, idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        self._writer.close_connection()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- batching (blocking) --------------------------------------------------------------------

    def pending(self, *, upto_ts_ms: int | None = None, limit: int = 10_000) -> PendingSlice | None:
        """Oldest committed readings in no batch yet (ts < upto_ts_ms), each series in ts order.

        A chunk whose data cannot be decoded (bit rot) is discarded with a "buffer.chunk_unreadable"
        event instead of blocking every later batch.
        """
        while True:
            try:
                return self._call(lambda c: batching.read_pending(c, self._names, upto_ts_ms, limit))
            except batching.UnreadableChunks as exc:
                lost = self._call(partial(batching.discard, chunk_ids=exc.chunk_ids))
                self._tally.add(dropped=lost, pending=-lost, errors=1, last_error=str(exc))

    def next_seq(self) -> int:
        """The seq the next batch must carry: persists, strictly increasing, never reused."""
        return self._call(lambda c: schema.meta(c, schema.LAST_SEQ) + 1)

    def seal_batch(
        self,
        seq: int,
        blob: bytes,
        pending: PendingSlice,
        windows: WindowProgress | None = None,
        *,
        sealed_ms: int | None = None,
    ) -> None:
        """Store the signed batch and mark exactly `pending`'s rows batched, in one transaction.

        `windows` (the windowing clock and revisions the batch carries) is stored in the same
        transaction; `sealed_ms` (default: the wall clock now) becomes `last_sealed_ms()`. Raises
        StalePending (a StorageError) when the slice was sealed already or evicted meanwhile.
        """
        token = pending.token
        if not isinstance(token, Token):
            raise StorageError("seal_batch needs a slice returned by pending() or empty_slice()")
        also = None if windows is None else (lambda c: window_replay.record(c, windows))
        self._call(lambda c: batching.seal(c, seq, blob, token, also, sealed_ms))
        self._tally.add(batched=token.readings, pending=-token.readings, outbox_rows=1)

    def last_sealed_ms(self) -> int | None:
        """When the last batch was sealed, in this run or an earlier one (None: never)."""
        return self._call(lambda c: schema.meta(c, schema.LAST_SEALED_MS) or None)

    def empty_slice(self) -> PendingSlice:
        """A slice of nothing: seal_batch with it stores a batch that carries only windows."""
        return PendingSlice(
            series_keys=(),
            series=np.zeros(0, np.int32),
            ts_ms=np.zeros(0, np.int64),
            value=np.zeros(0, np.float64),
            quality=np.zeros(0, np.uint16),
            gaps=(),
            events=(),
            token=batching.EMPTY_TOKEN,
        )

    def window_state(self) -> WindowState:
        """The windowing watermark and the live window revisions stored by sealed batches."""
        return self._call(window_replay.load)

    def batched_since(
        self, since_ts_ms: int, *, after_chunk: int = 0, max_chunks: int = 1_000
    ) -> BatchedReadings:
        """One page of the readings already in a batch with ts >= since_ts_ms, not pruned yet (replay).

        Pages follow commit order; the next page starts after the returned `last_chunk`.
        """
        return self._call(
            lambda c: window_replay.read_batched(c, self._names, since_ts_ms, after_chunk, max_chunks)
        )

    def undelivered(self, *, after_seq: int | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Outbox rows waiting for acknowledgement, in seq order."""
        return self._call(lambda c: batching.undelivered(c, after_seq, limit, self.epoch))

    def mark_delivered(self, seq: int, epoch: bytes | None = None) -> None:
        """The backend acknowledged batch `seq` (of `epoch`, when given): delete it (idempotent).

        A batch of a database quarantined meanwhile (another epoch) is not this database's `seq`.
        """
        if epoch is not None and epoch != self.epoch:
            return
        readings = self._call(lambda c: batching.deliver(c, seq))
        if readings is not None:
            self._tally.add(delivered=readings, outbox_rows=-1)

    def reject_batch(self, seq: int, epoch: bytes | None = None) -> int | None:
        """The backend refused batch `seq` for good: drop it, recording its readings as gaps
        (reason rejected_by_backend) that travel in the next batch; its readings, None if gone."""
        if epoch is not None and epoch != self.epoch:
            return None  # a batch of a database quarantined meanwhile: not this database's `seq`
        eviction = self._call(lambda c: batching.reject(c, seq))
        if eviction is None:
            return None
        self._tally.add(
            dropped=eviction.outbox_readings, gaps=eviction.gaps, outbox_rows=-eviction.outbox_rows
        )
        return eviction.outbox_readings

    # -- uplink traffic (blocking) ---------------------------------------------------------------

    def traffic_days(self, since_day: int) -> list[TrafficDay]:
        """The uplink's stored per-day totals from `since_day` (days since 1970-01-01, UTC) on."""
        return self._call(partial(traffic_days.load, since_day=since_day))

    def save_traffic_days(self, days: Sequence[TrafficDay], *, keep_from_day: int) -> None:
        """Replace the totals of `days`; days before `keep_from_day` are deleted."""
        self._call(partial(traffic_days.save, days=days, keep_from_day=keep_from_day))

    # -- inspection -----------------------------------------------------------------------------

    def statistics(self) -> StoreStatistics:
        """Counters of this store and what its database holds; no database access, loop-safe."""
        t = self._tally.snapshot()
        return StoreStatistics(
            committed=int(t["committed"] or 0),
            pending=int(t["pending"] or 0),
            batched=int(t["batched"] or 0),
            delivered=int(t["delivered"] or 0),
            outbox_rows=int(t["outbox_rows"] or 0),
            dropped=int(t["dropped"] or 0),
            gaps=int(t["gaps"] or 0),
            queued=self._writer.queued,
            db_bytes=sum(_size(Path(f"{self.path}{s}")) for s in ("", "-wal")),
            used_bytes=int(t["used_bytes"] or 0),
            commits=int(t["commits"] or 0),
            last_commit_ms=_opt_int(t["last_commit_ms"]),
            errors=int(t["errors"] or 0),
            last_error=None if t["last_error"] is None else str(t["last_error"]),
            pruned=int(t["pruned"] or 0),
            quarantined=int(t["quarantined"] or 0),
        )

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the batching connection; a corrupt file is quarantined and StorageError raised."""
        if self._writer.corrupt is not None:
            self._recover(self._writer.corrupt)
        try:
            return self._call_once(work)
        except _CorruptWhileRunning as exc:
            self._recover(str(exc))
            raise StorageError(f"buffer: {exc}; quarantined, going on with a fresh database") from None

    def _call_once(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._connection() as conn:
            try:
                return work(conn)
            except StorageError:
                raise
            except (sqlite3.Error, *schema.GARBAGE_ERRORS) as exc:
                self._tally.add(errors=1, last_error=f"{type(exc).__name__}: {exc}")
                if is_corruption(exc, self.path.parent):
                    raise _CorruptWhileRunning(f"{type(exc).__name__}: {exc}") from exc
                if not isinstance(exc, sqlite3.Error) or not is_full(exc):
                    raise StorageError(f"buffer: {exc}") from exc
            # a full filesystem: give the WAL's space back once and try again
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            try:
                return work(conn)
            except sqlite3.Error as exc:
                raise StorageError(f"buffer: {exc}") from exc

    def _recover(self, reason: str) -> None:
        """The file turned out corrupt while running: move it aside, go on with a fresh database.

        What the writer had queued moves to the new writer; what the old file held stays in the
        quarantined copy, and the "buffer.quarantined" event (old and new epoch) tells the backend.
        """
        with self._swap, self._lock:
            if self._closed:
                return
            readings, events, gaps = self._writer.hand_over()
            self._writer.close_connection()
            self._conn.close()
            self._conn, event = replace_corrupt(self.path, reason)
            self.epoch = schema.epoch(self._conn)
            self._names = SeriesNames()
            self._tally.set(pending=0, outbox_rows=0, used_bytes=schema.used_bytes(self._conn))
            self._tally.add(quarantined=1)
            self._writer = Writer(self.path, schema.connect(self.path), self.options, self._tally)
            self._writer.take_over(readings, [*events, event], gaps)
            self._writer.start()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise StorageError("the buffer is closed")
            yield self._conn


class _CorruptWhileRunning(Exception):
    """The database file is corrupt (found by a read or a commit after open)."""


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _count_pending(conn: sqlite3.Connection) -> int:
    below = schema.meta(conn, schema.BATCHED_BELOW)
    row = conn.execute("SELECT COALESCE(SUM(n - done), 0) FROM chunk WHERE id >= ?", (below,))
    return int(row.fetchone()[0])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _opt_int(value: int | str | None) -> int | None:
    return None if value is None else int(value)
