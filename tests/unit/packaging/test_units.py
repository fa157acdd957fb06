"""The systemd units: a watched notify service, no restart on a bad config, exposure <= 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[3] / "systemd"
SERVICES = [
    "gateway.service",
    "gateway-receiver.service",
    "gateway-receiver@.service",
    "gateway-metrics.service",
]


def settings(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (SYSTEMD / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_agent_is_a_watched_notify_service() -> None:
    unit = settings("gateway.service")
    assert unit["Type"] == ["notify"]
    assert int(unit["WatchdogSec"][0]) > 0
    assert unit["Restart"] == ["on-failure"]  # includes the watchdog's kill


def test_a_bad_config_or_a_newer_buffer_stops_restarts_and_no_pre_check_bypasses_that() -> None:
    unit = settings("gateway.service")
    assert set(unit["RestartPreventExitStatus"][0].split()) == {"2", "3"}
    assert "ExecStartPre" not in unit


def test_only_serial_devices_are_reachable() -> None:
    unit = settings("gateway.service")
    assert unit["DevicePolicy"] == ["closed"]
    classes = {value.split()[0] for value in unit["DeviceAllow"]}
    assert classes == {f"char-{name}" for name in ["ttyUSB", "ttyACM", "ttyAMA", "ttyS", "ttySC"]}
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["UMask"] == ["0027"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("unit", SERVICES)
def test_exposure_is_at_most_2(unit: str) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", unit.replace("@.", "@1.")],
        check=False,
        cwd=SYSTEMD,
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 2.0
