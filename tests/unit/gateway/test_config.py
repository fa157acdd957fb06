"""Config validation: every error names its key path, the offending value and what was expected."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway import tomlwriter
from gateway.config import GatewayConfig, load_config, parse_config
from kernel.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config" / "example.toml"


def minimal(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {"gateway_id": "gw-1", "key_file": "k.pem", "state_dir": "state"}
    data.update(extra)
    return data


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.gateway_id == "hro-lamppost-0042"
    assert config.sensors[0].id == "weather-quay-1"
    assert config.sensors[0].serial.protocol == "nmea"


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        'gateway_id = "gw-1"\nkey_file = "keys/k.pem"\nstate_dir = "state"\n[[sensors]]\nid = "m1"\n'
        'driver = "modbus"\n[sensors.modbus]\nhost = "127.0.0.1"\nunit = 1\nprofile = "sdm630"\n'
        'profiles_dir = "profiles"\n'
    )
    config = load_config(path)
    assert config.key_file == tmp_path / "keys" / "k.pem"
    assert config.state_dir == tmp_path / "state"
    assert config.sensors[0].modbus.profiles_dir == tmp_path / "profiles"  # type: ignore[union-attr]


def test_every_error_is_reported_with_path_value_and_expectation() -> None:
    data = minimal(
        uplink={"mqtt": {"port": 70000}},
        sensors=[{"id": "w1", "driver": "serial", "serial": {"port": "/dev/x", "baud": -5, "parity": "Q"}}],
    )
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    lines = str(info.value).splitlines()
    assert any(
        line.startswith("uplink.mqtt.port: got 70000;") and "less than 65536" in line for line in lines
    )
    assert any(
        line.startswith("sensors[0].serial.baud: got -5;") and "greater than 0" in line for line in lines
    )
    assert any(line.startswith("sensors[0].serial.parity: got 'Q';") for line in lines)
    assert len(lines) == 3


def test_missing_and_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"gateway_id": "gw-1", "state_dir": "s", "colour": "red"})
    text = str(info.value)
    assert "key_file: got (missing)" in text
    assert "colour: got 'red'; expected: Extra inputs are not permitted" in text


def test_unknown_driver_and_duplicate_sensor_ids_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"sensors\[0\]"):
        parse_config(minimal(sensors=[{"id": "x", "driver": "telepathy"}]))
    twice = {"id": "a", "driver": "serial", "serial": {"port": "/dev/x"}}
    with pytest.raises(ConfigError, match="used twice"):
        parse_config(minimal(sensors=[twice, twice]))


def test_resolution_must_be_positive() -> None:
    sensor = {"id": "a", "driver": "serial", "serial": {"port": "/dev/x"}, "resolution": {"t": 0}}
    with pytest.raises(ConfigError, match=r"sensors\[0\]\.resolution"):
        parse_config(minimal(sensors=[sensor]))


def test_toml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("gateway_id = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_written_toml_reads_back_identically() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert tomllib.loads(tomlwriter.dumps(data)) == data
    assert (
        GatewayConfig.model_validate(tomllib.loads(tomlwriter.dumps(data))).gateway_id == data["gateway_id"]
    )


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_config_check_exit_codes(tmp_path: Path) -> None:
    from gateway import signing_key

    private, _ = signing_key.generate_keypair(tmp_path / "keys")
    example = tomllib.loads(EXAMPLE.read_text()) | {
        "key_file": str(private),
        "state_dir": str(tmp_path / "s"),
    }
    usable = tmp_path / "example.toml"
    usable.write_text(tomlwriter.dumps(example))
    assert _check(usable).returncode == 0, _check(usable).stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'gateway_id = "has space"\nkey_file = "k"\nstate_dir = "s"\n[buffer]\ncommit_interval_s = 0\n'
    )
    result = _check(bad)
    assert result.returncode == 2
    assert "gateway_id: got 'has space'" in result.stderr
    assert "buffer.commit_interval_s: got 0" in result.stderr


def test_modbus_and_lorawan_sensors_validate_and_keys_never_echo(tmp_path: Path) -> None:
    meter = {"id": "m1", "driver": "modbus", "modbus": {"host": "127.0.0.1", "unit": 1, "profile": "sdm630"}}
    node = {
        "id": "n1",
        "driver": "lorawan",
        "lorawan": {"codec": "lht65", "abp": {"devaddr": "26011f02", "nwkskey": 12345, "appskey": "00" * 16}},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(sensors=[meter, node]))
    text = str(info.value)
    assert "sensors[1].lorawan.abp.nwkskey: got (secret, not shown)" in text
    assert "12345" not in text
    node["lorawan"]["abp"]["nwkskey"] = "11" * 16  # type: ignore[index]
    config = parse_config(minimal(sensors=[meter, node]))
    assert [s.driver for s in config.sensors] == ["modbus", "lorawan"]


def test_cli_config_check_reports_a_bad_session_key(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        'gateway_id = "gw-1"\nkey_file = "k"\nstate_dir = "s"\n[[sensors]]\nid = "n1"\ndriver = "lorawan"\n'
        '[sensors.lorawan]\ncodec = "lht65"\n'
        'abp = { devaddr = "26011f02", nwkskey = "zz112233445566778899aabbccddeeff", appskey = "'
        + "00" * 16
        + '" }\n'
    )
    result = _check(path)
    assert result.returncode == 2
    assert "nwkskey" in result.stderr and "zz1122" not in result.stderr


def serial_sensor(**extra: object) -> dict[str, object]:
    return {"id": "dust-9", "driver": "serial", "serial": {"port": "/dev/x", "protocol": "sds011"}, **extra}


def test_window_settings_are_checked() -> None:
    windows = {"length_s": 0.5, "upload": "sometimes", "statistics": ["mean", "median"]}
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(sensors=[serial_sensor(windows=windows)]))
    lines = str(info.value).splitlines()
    assert any(line.startswith("sensors[0].windows.length_s: got 0.5;") for line in lines)
    assert any(line.startswith("sensors[0].windows.upload: got 'sometimes';") for line in lines)
    assert any(line.startswith("sensors[0].windows.statistics[1]: got 'median';") for line in lines)


def test_raw_readings_must_outlive_the_windows_that_can_still_be_revised() -> None:
    windows = {"length_s": 3600, "max_lateness_s": 7200}
    data = minimal(buffer={"keep_raw_s": 7200}, sensors=[serial_sensor(windows=windows)])
    with pytest.raises(ConfigError, match=r"sensor 'dust-9': buffer.keep_raw_s \(7200\) must be at least"):
        parse_config(data)
    data["buffer"] = {"keep_raw_s": 10800}
    assert parse_config(data).sensors[0].windows is not None


def test_https_transport_needs_an_https_url_and_takes_its_files_from_the_config_folder(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"transport 'https' needs https\.url"):
        parse_config(minimal(uplink={"transport": "https"}))
    with pytest.raises(ConfigError, match=r"uplink\.https\.url: got 'http://backend/x'"):
        parse_config(minimal(uplink={"transport": "https", "https": {"url": "http://backend/x"}}))
    with pytest.raises(ConfigError, match="client_cert_file and client_key_file go together"):
        parse_config(minimal(uplink={"https": {"url": "https://backend/x", "client_cert_file": "c.pem"}}))
    https = {
        "url": "https://backend.example/gw/{gateway_id}",
        "ca_file": "tls/ca.pem",
        "token_file": "/etc/t",
    }
    config = parse_config(minimal(uplink={"transport": "https", "https": https}), base_dir=tmp_path)
    assert config.uplink.https.ca_file == tmp_path / "tls" / "ca.pem"
    assert config.uplink.https.token_file == Path("/etc/t")


def test_cli_config_check_opens_the_https_files(tmp_path: Path) -> None:
    from gateway import signing_key

    private, _ = signing_key.generate_keypair(tmp_path)
    private.rename(tmp_path / "k")
    path = tmp_path / "gw.toml"
    path.write_text(
        'gateway_id = "gw-1"\nkey_file = "k"\nstate_dir = "s"\n[uplink]\ntransport = "https"\n'
        '[uplink.https]\nurl = "https://backend.example/g/{gateway_id}"\ntoken_file = "token"\n'
    )
    (tmp_path / "token").write_text("\n")
    result = _check(path)
    assert (
        result.returncode == 2 and "uplink.https.token_file" in result.stderr and "is empty" in result.stderr
    )
    (tmp_path / "token").write_text("s3cret\n")
    assert _check(path).returncode == 0
