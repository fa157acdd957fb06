"""After a downgrade: a buffer written by a newer version is refused, kept in place, and the agent exits 3."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from buffer import Store
from buffer.schema import SCHEMA_VERSION, NewerSchema
from gateway import signing_key, tomlwriter
from gateway.cli.agent import EXIT_NEWER_STATE, run_command


def newer_buffer(state: Path) -> Path:
    Store.open(state / "buffer.db").close()
    with sqlite3.connect(state / "buffer.db") as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    return state / "buffer.db"


def test_a_newer_buffer_is_refused_with_the_recovery_and_not_quarantined(tmp_path: Path) -> None:
    db = newer_buffer(tmp_path)
    before = db.read_bytes()
    with pytest.raises(NewerSchema, match=r"newer gateway version.*Reinstall the newer package"):
        Store.open(db)
    assert db.read_bytes() == before
    assert not (tmp_path / "quarantine").exists()


def test_the_agent_exits_3_so_systemd_does_not_restart_it(tmp_path: Path) -> None:
    private, _ = signing_key.generate_keypair(tmp_path / "keys")
    newer_buffer(tmp_path / "state")
    config = tmp_path / "gateway.toml"
    config.write_text(
        tomlwriter.dumps(
            {"gateway_id": "gw-old", "key_file": str(private), "state_dir": str(tmp_path / "state")}
        )
    )
    result = CliRunner().invoke(run_command, ["--config", str(config)])
    assert result.exit_code == EXIT_NEWER_STATE == 3
    assert "newer gateway version" in result.output
