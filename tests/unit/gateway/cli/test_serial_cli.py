"""`gateway serial`: the hex dump layout and the errors a technician sees."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway.cli.serial import group, hex_dump


def test_hex_dump_shows_hex_and_printable_ascii_16_bytes_a_row() -> None:
    dump = hex_dump(b"$WIMTW,11.2,C*1F\r\n\xaa\xc0", "12:00:00.000")
    rows = dump.splitlines()
    assert rows[0] == "12:00:00.000  24 57 49 4d 54 57 2c 31 31 2e 32 2c 43 2a 31 46  |$WIMTW,11.2,C*1F|"
    assert rows[1] == "              0d 0a aa c0" + " " * 36 + "  |....|"


def test_probe_of_a_missing_port_fails_with_a_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(group, ["probe", str(tmp_path / "ttyNONE"), "--protocol", "nmea"])
    assert result.exit_code == 1
    assert "ttyNONE does not exist: is the adapter plugged in?" in result.output
    assert "agent" not in result.output  # a missing port is not the agent's doing


def test_regex_probe_needs_a_pattern_with_named_groups(tmp_path: Path) -> None:
    result = CliRunner().invoke(group, ["probe", "/dev/null", "--protocol", "regex", "--pattern", r"\d+"])
    assert result.exit_code == 2
    assert "named groups" in result.output


def test_probe_of_a_numbered_port_names_the_by_id_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(group, ["probe", str(tmp_path / "ttyUSB9"), "--protocol", "sds011"])
    assert result.exit_code == 1
    assert "ttyUSB9 may name another device after a replug or reboot" in result.stderr
    assert "/dev/serial/by-id" in result.stderr
