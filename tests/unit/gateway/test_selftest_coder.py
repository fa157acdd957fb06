"""The selftest's "coder" line and `gateway wire coder`: a broken install of the compiled coder is visible."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from gateway.selftest import coder_check
from gateway.wire import ctxmix


def test_the_installed_library_passes_with_its_abi() -> None:
    check = coder_check()
    assert check.check == "coder"
    assert check.passed, check.detail
    assert f"ABI {ctxmix.ABI}" in check.detail


def test_a_missing_library_fails_the_check_and_says_how_to_rebuild(tmp_path: Path) -> None:
    check = coder_check(tmp_path / "_ctxmix.so")
    assert not check.passed
    assert "make setup" in check.detail
    assert str(tmp_path / "_ctxmix.so") in check.detail


def test_gateway_wire_coder_reports_the_library_it_loaded() -> None:
    result = CliRunner().invoke(main, ["wire", "coder", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["loaded"] is True
    assert answer["abi"] == ctxmix.ABI
    assert answer["library"] == str(ctxmix.LIBRARY)
