"""`gateway keys` and `gateway wire` as a technician runs them: real processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CSV = """ts_ms,sensor,quantity,value,unit,resolution,time_resolution_ms
1764150000000,weather-1,air_temperature,12.34,Cel,0.01,
1764150060000,weather-1,air_temperature,12.36,Cel,0.01,
1764150120000,weather-1,air_temperature,,Cel,0.01,
1764150000200,sds011-1,pm10,17.3,ug/m3,0.1,1000
1764149999900,sds011-1,pm10,17.5,ug/m3,0.1,1000
1764150000000,weather-1,wind_speed,0.1,m/s,,
"""


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("wire-cli")
    init = gateway("keys", "init", "--dir", str(work / "keys"), "--json")
    assert init.returncode == 0, init.stderr
    assert len(json.loads(init.stdout)["kid"]) == 16
    (work / "readings.csv").write_text(CSV)
    batch = work / "batch.cose"
    encoded = gateway(
        "wire", "encode",
        "--readings", str(work / "readings.csv"),
        "--key", str(work / "keys" / "gateway.key.pem"),
        "--gateway-id", "gw-17",
        "--seq", "5",
        "--out", str(batch),
    )  # fmt: skip
    assert encoded.returncode == 0, encoded.stderr
    return batch, work / "keys" / "gateway.pub.pem"


def test_decode_prints_the_readings_as_json(signed: tuple[Path, Path]) -> None:
    batch, public = signed
    decoded = gateway(
        "wire", "decode", str(batch), "--pubkey", str(public), "--gateway-id", "gw-17", "--json"
    )
    assert decoded.returncode == 0, decoded.stderr
    result = json.loads(decoded.stdout)
    assert (result["gateway_id"], result["seq"], result["windows"], result["gaps"]) == (
        "gw-17",
        5,
        [],
        [],
    )
    readings = [(r["sensor"], r["quantity"], r["ts_ms"], r["value"], r["unit"]) for r in result["readings"]]
    assert readings == [
        ("weather-1", "air_temperature", 1764150000000, 12.34, "Cel"),
        ("weather-1", "air_temperature", 1764150060000, 12.36, "Cel"),
        ("sds011-1", "pm10", 1764150000000, 17.5, "ug/m3"),
        ("sds011-1", "pm10", 1764150000000, 17.3, "ug/m3"),
        ("weather-1", "wind_speed", 1764150000000, 0.1, "m/s"),
    ]


def test_the_gateway_id_is_the_callers_unless_the_batch_names_it(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    """Version 5 leaves the gateway id to the key: a bare public key does not say whose it is."""
    batch, public = signed
    bare = gateway("wire", "decode", str(batch), "--pubkey", str(public), "--json")
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout)["gateway_id"] is None
    assert (
        "gateway (unknown: give --gateway-id)"
        in gateway("wire", "decode", str(batch), "--pubkey", str(public)).stdout
    )
    named = tmp_path / "named.cose"
    encoded = gateway(
        "wire", "encode", "--readings", str(batch.parent / "readings.csv"),
        "--key", str(batch.parent / "keys" / "gateway.key.pem"), "--gateway-id", "gw-17", "--seq", "6",
        "--out", str(named), "--name-gateway",
    )  # fmt: skip
    assert encoded.returncode == 0, encoded.stderr
    shown = gateway("wire", "decode", str(named), "--pubkey", str(public), "--json")
    assert json.loads(shown.stdout)["gateway_id"] == "gw-17"
    other = gateway("wire", "decode", str(named), "--pubkey", str(public), "--gateway-id", "gw-18")
    assert other.returncode == 1
    assert (
        other.stderr.strip().splitlines()[-1].startswith("Error: BadSignature: batch claims gateway 'gw-17'")
    )


def test_a_tampered_batch_exits_1_with_one_line(signed: tuple[Path, Path], tmp_path: Path) -> None:
    batch, public = signed
    data = bytearray(batch.read_bytes())
    data[-1] ^= 0x40  # inside the signature
    tampered = tmp_path / "tampered.cose"
    tampered.write_bytes(bytes(data))
    result = gateway("wire", "decode", str(tampered), "--pubkey", str(public), "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "BadSignature" in result.stderr


def test_garbage_exits_1_with_one_line(signed: tuple[Path, Path], tmp_path: Path) -> None:
    _, public = signed
    garbage = tmp_path / "garbage.cose"
    garbage.write_bytes(b"not a batch at all")
    result = gateway("wire", "decode", str(garbage), "--pubkey", str(public), "--json")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "MalformedBatch" in result.stderr


@pytest.mark.slow
def test_keys_init_refuses_to_overwrite_and_rotate_keeps_the_old_kid(tmp_path: Path) -> None:
    first = gateway("keys", "init", "--dir", str(tmp_path), "--json")
    assert first.returncode == 0, first.stderr
    again = gateway("keys", "init", "--dir", str(tmp_path))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    rotated = gateway("keys", "rotate", "--dir", str(tmp_path), "--json")
    assert rotated.returncode == 0, rotated.stderr
    old_kid = json.loads(first.stdout)["kid"]
    assert json.loads(rotated.stdout)["previous_kid"] == old_kid
    shown = json.loads(gateway("keys", "show", "--dir", str(tmp_path), "--json").stdout)
    assert shown["previous_kids"] == [old_kid]
    assert shown["kid"] == json.loads(rotated.stdout)["kid"] != old_kid


@pytest.mark.slow
def test_another_gateways_key_exits_1(signed: tuple[Path, Path], tmp_path: Path) -> None:
    batch, _ = signed
    assert gateway("keys", "init", "--dir", str(tmp_path)).returncode == 0
    result = gateway("wire", "decode", str(batch), "--pubkey", str(tmp_path / "gateway.pub.pem"))
    assert result.returncode == 1
    assert "UnknownKey" in result.stderr and len(result.stderr.strip().splitlines()) == 1
