"""On a real post: every sensor of the gateway's configuration delivers readings through the real drivers.

Skipped unless GATEWAY_HIL=1. GATEWAY_HIL_CONFIG names the configuration (default
/etc/gateway/gateway.toml); stop the agent first, it holds the ports. GATEWAY_HIL_TIMEOUT_S
(default 120) is how long each sensor may take for its first three readings (duty-cycled dust
sensors and LoRaWAN devices that send every few minutes need more).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(os.environ.get("GATEWAY_HIL") != "1", reason="needs real hardware (GATEWAY_HIL=1)"),
]


def test_every_configured_sensor_delivers_readings() -> None:
    config = os.environ.get("GATEWAY_HIL_CONFIG", "/etc/gateway/gateway.toml")
    timeout_s = float(os.environ.get("GATEWAY_HIL_TIMEOUT_S", "120"))
    result = subprocess.run(
        [sys.executable, "-m", "hil.runner", "--config", config, "--timeout", str(timeout_s), "--json"],
        capture_output=True,
        text=True,
        timeout=timeout_s + 60,
        check=False,
    )
    assert result.returncode != 2, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    failed = [line for line in lines[:-1] if not line["passed"]]
    assert not failed, json.dumps(failed, indent=2)
