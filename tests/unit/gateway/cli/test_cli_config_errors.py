"""Commands that read the agent's configuration: a bad or unreadable file is one line and exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, check=False, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        'gateway_id = "has space"\nkey_file = "k"\nstate_dir = "s"\n[buffer]\ncommit_interval_s = 0\n'
    )
    return path


@pytest.mark.parametrize("command", ["status", "metrics", "watch", "flush", "selftest"])
def test_an_invalid_config_is_one_line_and_exit_2(command: str, bad_config: Path) -> None:
    result = _gateway(command, "--config", str(bad_config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {bad_config}: gateway_id: got 'has space'")
    assert "and 1 more; see: gateway config check" in result.stderr


def test_an_unreadable_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('gateway_id = "gw"\n')
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: every file is readable")
    result = _gateway("status", "--config", str(path))
    assert (
        result.returncode == 2 and "Permission denied" in result.stderr and "Traceback" not in result.stderr
    )


def test_without_config_the_installed_one_or_gateway_config_is_used(bad_config: Path, tmp_path: Path) -> None:
    by_env = _gateway("status", env={"GATEWAY_CONFIG": str(bad_config)})
    assert by_env.returncode == 2 and str(bad_config) in by_env.stderr
    missing = _gateway("status", env={"GATEWAY_CONFIG": str(tmp_path / "nowhere.toml")})
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr and "give --config FILE or set GATEWAY_CONFIG" in missing.stderr


def test_metrics_out_says_the_agent_is_down_with_the_reason_when_the_config_is_bad(
    bad_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gateway.prom"
    out.write_text("gateway_agent_up 1\n")  # from when it still ran
    result = _gateway("metrics", "--config", str(bad_config), "--out", str(out))
    assert result.returncode == 2
    text = out.read_text()
    assert "gateway_agent_up 0\n" in text and 'gateway_metrics_error{reason="config"} 1' in text


def test_no_permission_on_the_socket_says_what_to_do(tmp_path: Path) -> None:
    from gateway.control import unreachable_message

    message = unreachable_message(tmp_path / "control.sock", PermissionError(13, "Permission denied"))
    assert "join the 'gateway' group" in message and "sudo" in message
