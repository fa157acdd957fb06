"""The receiver core, free of any transport: `receive_many(arrivals)` -> one Verdict per arrival.

The MQTT and HTTP transports (mqtt.py, http.py) feed it; it verifies against the key registry in
the store, quarantines what cannot be verified now, stores the rest in one group commit, enrols keys
announced by verified rollover statements and then re-verifies that gateway's quarantine, and keeps
the series catalogues verified batches declare (wire version 4): a batch referring to a catalogue not
held yet waits in the quarantine until one declaring it arrives (docs/wire-format.md 3.5). Calls are
serialised by a lock (one store connection); callers run it in a worker thread.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway import wire
from gateway.receiver.envelope import parse_canonical
from gateway.receiver.key_snapshot import KeySnapshot
from gateway.receiver.store import (
    Outcome,
    QuarantineEntry,
    QuarantineReason,
    ReceiverStore,
    RegisteredKey,
    VerifiedBatch,
)
from gateway.receiver.verdict import Verdict
from gateway.wire.cose import SignedMessage
from gateway.wire.group import verify_group
from kernel.errors import (
    BadSignature,
    ConfigError,
    MalformedBatch,
    UnknownCatalogue,
    UnsupportedVersion,
    WireError,
)

log = structlog.get_logger(__name__)

#: re-read the key registry at most this often, so keys added or revoked by `gateway receiver keys`
#: in another process take effect in a running receiver
KEY_REFRESH_MS = 5000
#: quarantined batches re-verified per transaction
RETRY_PAGE = 200
#: series catalogues held in memory at most (a gateway has a handful; the store keeps them all, so
#: emptying the cache when full only costs a lookup per catalogue)
CATALOGUES_KEPT = 65536

#: (gateway id, catalogue id) -> the series table
CatalogueKey = tuple[str, bytes]
Catalogues = Mapping[CatalogueKey, tuple[wire.SeriesInfo, ...]]


@dataclass(frozen=True)
class Arrival:
    """Bytes as a transport received them: `claimed_gateway` is the id its topic or URL names (None
    for an MQTT topic layout without one, `gateway receiver --topic`: then only the key decides)."""

    blob: bytes
    claimed_gateway: str | None
    received_ms: int


@dataclass(frozen=True)
class CoreStatistics:
    """Counters since start (the CLI prints them, the demo and tests read them)."""

    verified: int
    batches_stored: int
    readings_stored: int
    windows_stored: int
    duplicates_dropped: int
    quarantined: int
    rejected: int
    by_reason: dict[str, int]
    keys_enrolled: int
    released_from_quarantine: int


@dataclass(frozen=True)
class Judgement:
    """Arrivals judged against a registry snapshot, not yet committed (`ReceiverCore.judge_many`)."""

    arrivals: Sequence[Arrival]
    judged: Sequence[_Judged]


@dataclass(frozen=True)
class _Judged:
    """One arrival after verification: exactly one of the two is set."""

    verified: VerifiedBatch | None = None
    quarantine: QuarantineEntry | None = None
    #: (gateway, catalogue id) a quarantined batch waits for (reason catalogue_unknown)
    waiting_for: CatalogueKey | None = None


class ReceiverCore:
    """Verify, quarantine, group-commit; thread-safe (one call at a time)."""

    def __init__(self, store: ReceiverStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._registry = KeySnapshot.of({})
        self._refreshed_ms: int | None = None
        self._counts: Counter[str] = Counter()
        #: catalogues known to be committed (or declared by a batch committed in this process)
        self._catalogues: dict[CatalogueKey, tuple[wire.SeriesInfo, ...]] = {}

    def receive(self, arrival: Arrival) -> Verdict:
        """One arrival in its own transaction."""
        return self.receive_many([arrival])[0]

    def receive_many(self, arrivals: Sequence[Arrival]) -> list[Verdict]:
        """Judge every arrival and commit them all in ONE transaction; returns after the commit.

        StorageError when the commit failed: nothing of this call is stored, nothing may be acknowledged.
        """
        return self.commit_judged(self.judge_many(arrivals))

    def judge_many(self, arrivals: Sequence[Arrival]) -> Judgement:
        """Verify and decode (the CPU-bound half; touches no database, may run beside a commit)."""
        return Judgement(arrivals, self._judge_all(arrivals, self._registry))

    def commit_judged(self, judgement: Judgement) -> list[Verdict]:
        """Commit what `judge_many` made of the arrivals in ONE transaction; returns after the commit.

        StorageError when the commit failed: nothing of this call is stored, nothing may be acknowledged.
        """
        arrivals = judgement.arrivals
        with self._lock:
            if arrivals:
                self._refresh_keys(max(a.received_ms for a in arrivals))
            registry = self._registry
            # a key enrolled since the judging (a rollover in the group before): judge those again
            judged = [
                self._judge(a, registry) if _stale(j, registry) else j
                for a, j in zip(arrivals, judgement.judged, strict=True)
            ]
            # a catalogue declared in this group or kept by the store (another receiver, an earlier
            # run): decode the batches referring to it in this same transaction
            declared = _declared(judged)
            judged = [
                self._judge(a, registry, declared) if _waits_for_catalogue(j) else j
                for a, j in zip(arrivals, judged, strict=True)
            ]
            return self._commit(arrivals, judged, release=())

    def _commit(
        self, arrivals: Sequence[Arrival], judged: Sequence[_Judged], release: Sequence[int]
    ) -> list[Verdict]:
        batches = [j.verified for j in judged if j.verified is not None]
        quarantine = [j.quarantine for j in judged if j.quarantine is not None]
        outcomes = iter(self._store.commit(batches, quarantine, release))
        verdicts = []
        for j in judged:
            if j.verified is not None:
                verdicts.append(Verdict(next(outcomes)))
            else:
                assert j.quarantine is not None
                verdicts.append(Verdict(j.quarantine.reason, j.quarantine.detail))
        self._after_commit(arrivals, judged, verdicts)
        return verdicts

    def _after_commit(
        self, arrivals: Sequence[Arrival], judged: Sequence[_Judged], verdicts: Sequence[Verdict]
    ) -> None:
        """Count and log; keep replays' bytes aside; enrol rolled-over keys and remember new catalogues,
        then retry those gateways' quarantine."""
        replays = []
        rolled_over: set[str] = set()
        catalogued = self._keep_catalogues(_declared(judged))
        for arrival, j, verdict in zip(arrivals, judged, verdicts, strict=True):
            self._count(arrival, verdict)
            if verdict.result is Outcome.REPLAY:
                detail = "identity stored with other content"
                replays.append(self._entry(arrival, QuarantineReason.REPLAY, detail))
            if j.verified is None or verdict.result is Outcome.REPLAY:
                continue
            batch = j.verified.batch
            if verdict.result is Outcome.STORED:
                self._count_stored(batch)
            if batch.rollover is not None and self._enrol_rollover(batch, arrival):
                rolled_over.add(batch.gateway_id)
        if replays:
            self._store.commit([], replays)
        for gateway_id in sorted(rolled_over | catalogued | self._declared_meanwhile(judged)):
            self._retry(gateway_id, max(a.received_ms for a in arrivals))

    def _declared_meanwhile(self, judged: Sequence[_Judged]) -> set[str]:
        """Gateways with a batch just quarantined for a catalogue that the store holds by now.

        Receivers sharing a database race: this one looked for the catalogue and found none, another
        committed the declaring batch and retried that gateway's quarantine before this one's entry was
        committed. Looking once more after the commit closes the gap: either the other receiver's
        retry saw the entry, or this look sees the catalogue (one query per such batch, none otherwise).
        """
        waiting = {j.waiting_for for j in judged if j.waiting_for is not None}
        return {
            gateway_id for gateway_id, catalogue in waiting if self._store.catalogue(gateway_id, catalogue)
        }

    def _keep_catalogues(self, declared: Catalogues) -> set[str]:
        """Remember committed catalogues; returns the gateways with one new here (whose quarantine may
        hold batches waiting for it)."""
        new = {key for key in declared if key not in self._catalogues}
        for key in new:
            if len(self._catalogues) >= CATALOGUES_KEPT:
                self._catalogues.clear()
            self._catalogues[key] = declared[key]
        return {gateway_id for gateway_id, _ in new}

    def _catalogue_lookup(self, gateway_id: str, declared: Catalogues | None) -> wire.CatalogueLookup:
        """How a batch of `gateway_id` finds its catalogue: in memory, and when `declared` is given
        (under the lock) also among the group's declaring batches and in the store."""

        def lookup(catalogue: bytes) -> tuple[wire.SeriesInfo, ...] | None:
            key = (gateway_id, catalogue)
            found = self._catalogues.get(key)
            if found is not None or declared is None:
                return found
            found = declared.get(key)
            if found is None:
                table = self._store.catalogue(gateway_id, catalogue)
                if table is not None:
                    found = wire.catalogue_series(table)
                    self._keep_catalogues({key: found})
            return found

        return lookup

    def _enrol_rollover(self, batch: wire.Batch, arrival: Arrival) -> bool:
        """Register the key a verified rollover statement announces; True when it is new."""
        assert batch.rollover is not None
        public = Ed25519PublicKey.from_public_bytes(batch.rollover.new_public_key)
        key = RegisteredKey(
            kid=wire.kid_for(public), gateway_id=batch.gateway_id, public_key=batch.rollover.new_public_key,
            added_ms=arrival.received_ms, source="rollover",
        )  # fmt: skip
        try:
            added = self._store.add_key(key)
        except ConfigError as exc:  # a kid collision with another gateway: keep the old key only
            log.error("rollover refused", gateway_id=batch.gateway_id, error=str(exc))
            return False
        if added:
            self._remember(key)
            self._counts["keys_enrolled"] += 1
            log.info(
                "key enrolled by rollover", gateway_id=batch.gateway_id, kid=key.kid.hex(), seq=batch.seq
            )
        return added

    def enrol(self, key: RegisteredKey) -> int:
        """Register a key (CLI, --keys import) and re-verify its gateway's quarantine; returns how many
        quarantined batches that released."""
        with self._lock:
            self._store.add_key(key)
            stored = self._store.key(key.kid)  # perhaps registered (and revoked) before
            self._remember(stored if stored is not None else key)
            return self._retry(key.gateway_id, key.added_ms)

    def retry(self, gateway_id: str | None, now_ms: int) -> int:
        """Re-verify the retryable quarantine (of one gateway, or all); returns how many were released."""
        with self._lock:
            self._refreshed_ms = None
            self._refresh_keys(now_ms)
            return self._retry(gateway_id, now_ms)

    def _retry(self, gateway_id: str | None, now_ms: int) -> int:
        released, limit = 0, RETRY_PAGE
        while rows := self._store.quarantined(gateway_id=gateway_id, retryable_only=True, limit=limit):
            arrivals = [Arrival(r.blob, r.gateway_id, r.received_ms) for r in rows]
            judged = self._judge_all(arrivals, self._registry, {})
            done = [r.id for r, j in zip(rows, judged, strict=True) if j.verified is not None]
            if not done:
                if len(rows) < limit:
                    break
                limit *= 4  # the oldest rows still do not verify: look further back
                continue
            pairs = [(a, j) for a, j in zip(arrivals, judged, strict=True) if j.verified is not None]
            self._commit([a for a, _ in pairs], [j for _, j in pairs], release=done)
            released += len(done)
        self._counts["released_from_quarantine"] += released
        if released:
            log.info("quarantine released", gateway_id=gateway_id, batches=released, at_ms=now_ms)
        return released

    def _judge(self, arrival: Arrival, registry: KeySnapshot, declared: Catalogues | None = None) -> _Judged:
        """Verify one arrival against the registry: a VerifiedBatch, or why to keep it aside."""
        return self._judge_all([arrival], registry, declared)[0]

    def _judge_all(
        self, arrivals: Sequence[Arrival], registry: KeySnapshot, declared: Catalogues | None = None
    ) -> list[_Judged]:
        """Verify arrivals against the registry, decoding the readings of all together (wire.group).

        Catalogues are looked up in memory only, unless `declared` is given (under the lock): then
        also among those and in the store."""
        judged: list[_Judged | None] = []
        items: list[tuple[Arrival, SignedMessage, RegisteredKey]] = []
        for arrival in arrivals:
            pre = self._known_signer(arrival, registry)
            judged.append(pre if isinstance(pre, _Judged) else None)
            if not isinstance(pre, _Judged):
                items.append((arrival, *pre))
        results = iter(
            verify_group(
                [
                    (
                        message,
                        registry.public[key.kid],
                        key.gateway_id,
                        self._catalogue_lookup(key.gateway_id, declared),
                    )
                    for _, message, key in items
                ]
            )
        )
        checked = iter(self._checked(a, m, k, next(results)) for a, m, k in items)
        return [j if j is not None else next(checked) for j in judged]

    def _known_signer(
        self, arrival: Arrival, registry: KeySnapshot
    ) -> _Judged | tuple[SignedMessage, RegisteredKey]:
        """The parsed envelope and its registered key, or why the arrival cannot be verified now."""
        try:
            message = parse_canonical(arrival.blob)
        except MalformedBatch as exc:
            return _Judged(quarantine=self._entry(arrival, QuarantineReason.MALFORMED, str(exc)))
        known = registry.find(message.kid)
        reason = _unverifiable(registry, known, arrival.claimed_gateway)
        if reason is not None:
            detail = f"kid {message.kid.hex()}: {reason.value}"
            if message.kid in registry.shared_hints:
                detail += (
                    " (more than one registered key starts with these 4 bytes: give its gateway a new key)"
                )
            entry = self._entry(arrival, reason, detail, message.kid, message.content_digest)
            return _Judged(quarantine=entry)
        assert known is not None
        return message, known

    def _checked(
        self, arrival: Arrival, message: SignedMessage, known: RegisteredKey, result: wire.Batch | WireError
    ) -> _Judged:
        """The verdict on a verified (or refused) batch: stored, quarantined, or for another gateway."""
        if isinstance(result, UnknownCatalogue):
            entry = self._entry(
                arrival, QuarantineReason.CATALOGUE_UNKNOWN, str(result), message.kid, message.content_digest
            )  # the gateway is known from its key even where the topic names none: its retry finds it
            return _Judged(
                quarantine=dataclasses.replace(entry, gateway_id=known.gateway_id),
                waiting_for=(known.gateway_id, result.catalogue),
            )
        if isinstance(result, BadSignature | MalformedBatch | UnsupportedVersion):
            reason = _REASON_OF_ERROR[type(result)]
            return _Judged(
                quarantine=self._entry(arrival, reason, str(result), message.kid, message.content_digest)
            )
        if isinstance(result, WireError):
            raise result
        batch = result
        if arrival.claimed_gateway is not None and batch.gateway_id != arrival.claimed_gateway:
            detail = f"signed for gateway {batch.gateway_id!r}, arrived for {arrival.claimed_gateway!r}"
            return _Judged(
                quarantine=self._entry(arrival, QuarantineReason.TOPIC_MISMATCH, detail, message.kid)
            )
        return _Judged(verified=VerifiedBatch(batch, arrival.blob, arrival.received_ms))

    @staticmethod
    def _entry(
        arrival: Arrival,
        reason: QuarantineReason,
        detail: str,
        kid: bytes | None = None,
        digest: bytes | None = None,
    ) -> QuarantineEntry:
        return QuarantineEntry(
            arrival.blob, reason, detail, arrival.received_ms, arrival.claimed_gateway, kid, digest
        )

    def _refresh_keys(self, now_ms: int) -> None:
        if self._refreshed_ms is not None and now_ms - self._refreshed_ms < KEY_REFRESH_MS:
            return
        self._registry = KeySnapshot.of({k.kid: k for k in self._store.keys()})  # noqa: SIM118 - a store
        self._refreshed_ms = now_ms

    def _remember(self, key: RegisteredKey) -> None:
        self._registry = self._registry.with_key(key)

    def _count(self, arrival: Arrival, verdict: Verdict) -> None:
        self._counts[f"reason:{verdict.name}"] += 1
        if isinstance(verdict.result, QuarantineReason):
            kind = "quarantined" if verdict.result.retryable else "rejected"
            self._counts[kind] += 1
            log.warning(
                f"batch {kind}", reason=verdict.name, gateway_id=arrival.claimed_gateway,
                bytes=len(arrival.blob), detail=verdict.detail,
            )  # fmt: skip
        elif verdict.result is Outcome.REPLAY:
            self._counts["rejected"] += 1
            log.warning("batch rejected", reason="replay", gateway_id=arrival.claimed_gateway)
        else:
            self._counts["verified"] += 1

    def _count_stored(self, batch: wire.Batch) -> None:
        self._counts["batches_stored"] += 1
        self._counts["readings_stored"] += len(batch.readings)
        self._counts["windows_stored"] += len(batch.windows)

    def statistics(self) -> CoreStatistics:
        """Counters so far."""
        c = self._counts
        by_reason = {k.removeprefix("reason:"): v for k, v in c.items() if k.startswith("reason:")}
        return CoreStatistics(
            verified=c["verified"], batches_stored=c["batches_stored"], readings_stored=c["readings_stored"],
            windows_stored=c["windows_stored"], duplicates_dropped=by_reason.get("duplicate", 0),
            quarantined=c["quarantined"], rejected=c["rejected"], by_reason=by_reason,
            keys_enrolled=c["keys_enrolled"], released_from_quarantine=c["released_from_quarantine"],
        )  # fmt: skip


_REASON_OF_ERROR: dict[type[Exception], QuarantineReason] = {
    BadSignature: QuarantineReason.BAD_SIGNATURE,
    MalformedBatch: QuarantineReason.MALFORMED,
    UnsupportedVersion: QuarantineReason.UNSUPPORTED_VERSION,
}


def _unverifiable(
    registry: KeySnapshot, known: RegisteredKey | None, claimed: str | None
) -> QuarantineReason | None:
    """Why a kid cannot verify now, or None when it can."""
    if known is None and claimed is None:
        return QuarantineReason.UNKNOWN_KEY
    if known is None:
        return QuarantineReason.UNKNOWN_KEY if claimed in registry.gateways else QuarantineReason.NOT_ENROLLED
    return QuarantineReason.REVOKED if known.revoked_ms is not None else None


def _declared(judged: Sequence[_Judged]) -> dict[CatalogueKey, tuple[wire.SeriesInfo, ...]]:
    """The catalogues the verified batches among `judged` declare."""
    return {
        (j.verified.batch.gateway_id, j.verified.batch.catalogue): j.verified.batch.series
        for j in judged
        if j.verified is not None and j.verified.batch.catalogue_table
    }


def _waits_for_catalogue(judged: _Judged) -> bool:
    return judged.quarantine is not None and judged.quarantine.reason is QuarantineReason.CATALOGUE_UNKNOWN


def _stale(judged: _Judged, registry: KeySnapshot) -> bool:
    """Quarantined for a missing key that the registry holds now."""
    entry = judged.quarantine
    return (
        entry is not None
        and entry.kid is not None
        and registry.find(entry.kid) is not None
        and entry.reason
        in (
            QuarantineReason.UNKNOWN_KEY,
            QuarantineReason.NOT_ENROLLED,
        )
    )
