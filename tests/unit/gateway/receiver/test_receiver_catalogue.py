"""Series catalogues at the receiver (wire versions 4 to 6): a batch naming a catalogue the receiver lacks is
kept, acknowledged and stored as soon as a batch declaring it arrives; nothing is lost or rejected."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import wire
from gateway.cli import main
from gateway.receiver import Arrival, Outcome, QuarantineReason, ReceiverCore, RegisteredKey, SqliteStore
from hil.fleet import SimulatedGateway
from tests.unit.gateway.receiver.upgraded_outbox import (
    outbox_after_upgrade,
    version_4_pair_and_todays_declaration,
)

NOW = 1_767_300_000_000
DATA = Path(__file__).parent.parent / "wire" / "data"
#: the key the frozen version-3 batch is signed with (test_wire_versions.py)
V3_KEY = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)


def enrolled(path: Path, gw: SimulatedGateway) -> tuple[SqliteStore, ReceiverCore]:
    store = SqliteStore(path)
    core = ReceiverCore(store)
    core.enrol(RegisteredKey(gw.kid, gw.gateway_id, gw.public_raw, NOW, "cli"))
    return store, core


def results(core: ReceiverCore, blobs: list[bytes], gateway_id: str = "gw-1") -> list[object]:
    return [v.result for v in core.receive_many([Arrival(b, gateway_id, NOW) for b in blobs])]


def test_a_receiver_restarted_with_an_empty_database_stores_every_later_batch(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1", series=30)
    first_store, first = enrolled(tmp_path / "before.db", gw)
    declaring, referring = gw.batch(), [gw.batch(refer=True) for _ in range(3)]
    assert results(first, [declaring, *referring]) == [Outcome.STORED] * 4
    assert first_store.count_readings() == 4 * 150
    # 30 series rows stay home (version 5 writes a row in ~10 bytes: 73 of 388 here, 80+ in version 4)
    assert all(len(r) < len(declaring) - 60 for r in referring)
    # the receiver comes back with an empty database: the gateway goes on naming its catalogue
    store, core = enrolled(tmp_path / "after.db", gw)
    waiting = [gw.batch(refer=True) for _ in range(5)]
    verdicts = core.receive_many([Arrival(b, "gw-1", NOW) for b in waiting])
    assert [v.result for v in verdicts] == [QuarantineReason.CATALOGUE_UNKNOWN] * 5
    assert all(v.settled for v in verdicts)  # acknowledged: the gateway deletes them from its outbox
    assert store.count_readings() == 0
    assert [q.reason for q in store.quarantined()] == [QuarantineReason.CATALOGUE_UNKNOWN] * 5
    # the resend rule brings the table again: everything that waited is decoded and stored
    assert results(core, [gw.batch()]) == [Outcome.STORED]
    assert store.count_readings("gw-1") == 6 * 150
    assert store.quarantined() == []
    after = [gw.batch(refer=True) for _ in range(2)]
    assert results(core, after) == [Outcome.STORED] * 2
    stats = core.statistics()
    assert (stats.rejected, stats.released_from_quarantine) == (0, 5)
    assert stats.by_reason["catalogue_unknown"] == 5


def test_a_declaring_batch_behind_its_referrers_in_one_group_stores_them_in_the_same_commit(
    tmp_path: Path,
) -> None:
    gw = SimulatedGateway("gw-1", series=4)
    store, core = enrolled(tmp_path / "received.db", gw)
    declaring = gw.batch()
    referring = [gw.batch(refer=True) for _ in range(3)]
    assert results(core, [*referring, declaring]) == [Outcome.STORED] * 4
    assert store.quarantined() == [] and store.count_readings() == 4 * 20
    assert core.statistics().quarantined == 0


def test_a_restarted_receiver_finds_the_catalogue_in_its_database(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1", series=3)
    store, core = enrolled(tmp_path / "received.db", gw)
    assert results(core, [gw.batch()]) == [Outcome.STORED]
    store.close()
    again = SqliteStore(tmp_path / "received.db")  # a new process: nothing in memory
    assert results(ReceiverCore(again), [gw.batch(refer=True)]) == [Outcome.STORED]
    assert again.count_readings() == 2 * 15


def test_a_catalogue_is_per_gateway(tmp_path: Path) -> None:
    """Two gateways with the same series have the same catalogue id; one's declaration does not
    decode the other's batches (each gateway's tables come only from batches it signed)."""
    gw1, gw2 = SimulatedGateway("gw-1", series=2), SimulatedGateway("gw-2", series=2)
    store, core = enrolled(tmp_path / "received.db", gw1)
    core.enrol(RegisteredKey(gw2.kid, "gw-2", gw2.public_raw, NOW, "cli"))
    assert results(core, [gw1.batch()]) == [Outcome.STORED]
    assert results(core, [gw2.batch(refer=True)], "gw-2") == [QuarantineReason.CATALOGUE_UNKNOWN]
    assert results(core, [gw2.batch()], "gw-2") == [Outcome.STORED]
    assert store.count_readings("gw-2") == 2 * 10 and store.quarantined() == []


def test_quarantine_list_shows_batches_waiting_for_their_catalogue(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-3", series=2)
    db = tmp_path / "received.db"
    store, core = enrolled(db, gw)
    results(core, [gw.batch(refer=True)], "gw-3")
    store.close()
    listed = CliRunner().invoke(main, ["receiver", "quarantine", "list", "--db", str(db), "--json"])
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["reason"], r["gateway_id"], r["retryable"]) for r in rows] == [
        ("catalogue_unknown", "gw-3", True)
    ]


def test_an_upgrade_delivers_version_3_batches_left_in_the_outbox_beside_newer_ones(
    tmp_path: Path,
) -> None:
    """The outbox of an upgraded agent still holds batches the version-3 writer sealed (the frozen
    one: 663 readings, seq 6); the new agent's first batch declares its catalogue, the next ones refer
    to it. The receiver stores all of them, in whatever order they come."""
    old = (DATA / "batch_v3_catalogue.cose").read_bytes()
    gw = SimulatedGateway("gw-fixture", series=5, key=V3_KEY, epoch=bytes(range(16)), seq=7)
    store, core = enrolled(tmp_path / "received.db", gw)
    new_declaring, new_referring = gw.batch(), gw.batch(refer=True)
    assert results(core, [new_referring, old], "gw-fixture") == [
        QuarantineReason.CATALOGUE_UNKNOWN,
        Outcome.STORED,  # a version-3 batch carries its table: no catalogue needed
    ]
    assert results(core, [new_declaring], "gw-fixture") == [Outcome.STORED]
    assert store.count_readings("gw-fixture") == 663 + 2 * 25
    assert store.quarantined() == []


def test_wire_decode_takes_the_declaring_batch_as_catalogue(tmp_path: Path) -> None:
    gw = SimulatedGateway("gw-1", series=3)
    (tmp_path / "declaring.cose").write_bytes(gw.batch())
    (tmp_path / "referring.cose").write_bytes(gw.batch(refer=True))
    pem = tmp_path / "gw.pem"
    pem.write_bytes(gw.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    runner, referring = CliRunner(), str(tmp_path / "referring.cose")
    alone = runner.invoke(main, ["wire", "decode", referring, "--pubkey", str(pem), "--json"])
    assert alone.exit_code == 1 and "UnknownCatalogue" in alone.output
    with_table = runner.invoke(
        main,
        [
            "wire",
            "decode",
            referring,
            "--pubkey",
            str(pem),
            "--catalogue",
            str(tmp_path / "declaring.cose"),
            "--json",
        ],
    )
    assert with_table.exit_code == 0, with_table.output
    decoded = json.loads(with_table.output)
    assert decoded["seq"] == 1 and len(decoded["readings"]) == 15
    assert {r["sensor"] for r in decoded["readings"]} == {"sensor-0", "sensor-1", "sensor-2"}


def test_an_upgraded_agent_delivers_the_version_3_batch_in_its_outbox_and_its_own(tmp_path: Path) -> None:
    """The outbox of the buffer holds a batch the version-3 agent sealed (the frozen one); the new
    agent's batcher seals version-5 batches behind it (the first declares the catalogue, the next ones
    name it). Delivered byte for byte, newest first (the worst order), the receiver stores them all."""
    old = (DATA / "batch_v3_catalogue.cose").read_bytes()
    outbox = outbox_after_upgrade(tmp_path / "buffer.db", old, V3_KEY, 3, NOW)
    assert outbox[0] == old and len(outbox) == 4
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    public = V3_KEY.public_key().public_bytes_raw()
    core.enrol(RegisteredKey(wire.kid_for(V3_KEY.public_key()), "gw-fixture", public, NOW, "cli"))
    verdicts = [core.receive(Arrival(blob, "gw-fixture", NOW)).result for blob in reversed(outbox)]
    assert verdicts == [QuarantineReason.CATALOGUE_UNKNOWN] * 2 + [Outcome.STORED] * 2
    assert store.count_readings("gw-fixture") == 663 + 3 * 4
    assert store.quarantined() == []


class _DeclaredJustBefore(SqliteStore):
    """A store whose first commit of a `catalogue_unknown` entry lets another receiver on the same
    database commit the declaring batch first: the race between receivers of one share group."""

    def __init__(self, path: Path, other: ReceiverCore, declaring: bytes) -> None:
        super().__init__(path)
        self._other, self._declaring = other, declaring

    def commit(self, batches, quarantine, release=()):  # type: ignore[no-untyped-def,override]
        if self._declaring and any(q.reason is QuarantineReason.CATALOGUE_UNKNOWN for q in quarantine):
            declaring, self._declaring = self._declaring, b""
            assert results(self._other, [declaring]) == [Outcome.STORED]  # and it retried gw-1: nothing yet
        return super().commit(batches, quarantine, release)


def test_a_referrer_quarantined_while_another_receiver_commits_its_declaration_is_stored(
    tmp_path: Path,
) -> None:
    gw = SimulatedGateway("gw-1", series=3)
    _, other = enrolled(tmp_path / "shared.db", gw)
    declaring, referring = gw.batch(), gw.batch(refer=True)
    store = _DeclaredJustBefore(tmp_path / "shared.db", other, declaring)
    core = ReceiverCore(store)
    verdicts = core.receive_many([Arrival(referring, "gw-1", NOW)])
    assert [v.result for v in verdicts] == [QuarantineReason.CATALOGUE_UNKNOWN]  # acknowledged as kept
    assert store.quarantined() == []  # ... and released at once, not at the gateway's next declaration
    assert store.count_readings("gw-1") == 2 * 15


def test_version_4_batches_left_in_the_outbox_are_stored_and_a_version_5_table_releases_them(
    tmp_path: Path,
) -> None:
    """The outbox of an agent upgraded to version 5 holds the frozen version-4 pair (seq 7 declares
    the catalogue, seq 8 names it). A receiver that gets the naming one first keeps it aside; the
    new agent's version-5 batch declaring the same table (same catalogue id: one canonical form)
    releases it; the version-4 declaring batch stores as well (1,650 readings each)."""
    v4_declaring, v4_referring, v5_declaring = version_4_pair_and_todays_declaration(V3_KEY, NOW, NOW)
    ring = wire.Keyring()
    ring.add("gw-fixture", V3_KEY.public_key())
    assert wire.verify_and_decode(v5_declaring, ring).version == 6  # the writer of today
    store = SqliteStore(tmp_path / "received.db")
    core = ReceiverCore(store)
    public = V3_KEY.public_key().public_bytes_raw()
    core.enrol(RegisteredKey(wire.kid_for(V3_KEY.public_key()), "gw-fixture", public, NOW, "cli"))
    assert results(core, [v4_referring], "gw-fixture") == [QuarantineReason.CATALOGUE_UNKNOWN]
    assert results(core, [v5_declaring], "gw-fixture") == [Outcome.STORED]
    assert store.quarantined() == []
    assert results(core, [v4_declaring], "gw-fixture") == [Outcome.STORED]
    assert store.count_readings("gw-fixture") == 2 * 1650 + 1


def test_a_version_5_batch_left_in_the_outbox_declares_the_catalogue_a_version_6_batch_refers_to(
    tmp_path: Path,
) -> None:
    """An agent upgraded to version 6 still holds the frozen version-5 batch (seq 10, declaring the
    fixture's catalogue, every column count stated) and sends a version-6 batch referring to the
    same table. Whichever arrives first, both are stored (1,650 + 1 readings) and nothing stays in
    the quarantine."""
    v5_declaring = (DATA / "batch_v5_declaring.cose").read_bytes()
    ring = wire.Keyring()
    ring.add("gw-fixture", V3_KEY.public_key())
    old = wire.verify_and_decode(v5_declaring, ring)
    assert old.version == 5
    v6_referring = wire.sign(
        wire.encode_batch(
            gateway_id="gw-fixture", seq=11, created_ms=NOW, series=old.series, epoch=bytes(range(16)),
            readings=wire.ReadingColumns(series=[1, 1], ts_ms=[NOW, NOW + 60_000], value=[88.5, 88.5], quality=[0, 0]),
            refer_to_catalogue=True,
        ),
        V3_KEY,
        wire.kid_for(V3_KEY.public_key()),
    )  # fmt: skip
    public = V3_KEY.public_key().public_bytes_raw()
    for name, order in (
        ("old-first", [v5_declaring, v6_referring]),
        ("new-first", [v6_referring, v5_declaring]),
    ):
        store = SqliteStore(tmp_path / f"{name}.db")
        core = ReceiverCore(store)
        core.enrol(RegisteredKey(wire.kid_for(V3_KEY.public_key()), "gw-fixture", public, NOW, "cli"))
        got = [results(core, [blob], "gw-fixture")[0] for blob in order]
        expected_first = Outcome.STORED if name == "old-first" else QuarantineReason.CATALOGUE_UNKNOWN
        assert got == [expected_first, Outcome.STORED]
        assert store.quarantined() == []
        assert store.count_readings("gw-fixture") == 1650 + 2
