"""The typed bus-family registry: config, path resolution, secret masking and drivers from one list."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

import drivers.lora
import drivers.modbus
import drivers.serial
from drivers.family import BusFamily
from drivers.lora.config import CodecChoice
from gateway.buses import BUS_FAMILIES
from gateway.config import DRIVER_TAGS, SECRET_KEYS, SENSOR_MODELS, GatewayConfig, load_config, parse_config
from gateway.sensors import build_drivers
from kernel.errors import ConfigError

#: decodes one byte as a temperature: enough to prove the file was found and run
DECODER_JS = "function decodeUplink(input) { return { data: { temperature: input.bytes[0] } }; }\n"
ABP = '{ devaddr = "26011f01", nwkskey = "2b7e151628aed2a6abf7158809cf4f3c", appskey = "000102030405060708090a0b0c0d0e0f" }'


def js_config(folder: Path, js_file: str) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        'gateway_id = "gw-1"\nkey_file = "k.pem"\nstate_dir = "state"\n'
        f'[[sensors]]\nid = "node-1"\ndriver = "lorawan"\n[sensors.lorawan]\ncodec = "js"\njs_file = "{js_file}"\n'
        f'listen = "127.0.0.1:0"\nabp = {ABP}\n'
        f'[[sensors]]\nid = "modem-1"\ndriver = "lora_modem"\n[sensors.lora_modem]\nmodem = "rak3172"\n'
        f'port = "/dev/ttyNONE"\ncodec = "js"\njs_file = "{js_file}"\n'
    )
    return path


def test_a_relative_js_file_is_taken_from_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # under systemd the working directory is /: a relative path must not depend on it
    (tmp_path / "codecs").mkdir()
    (tmp_path / "codecs" / "decoder.js").write_text(DECODER_JS)
    config = load_config(js_config(tmp_path, "codecs/decoder.js"))
    sections = [sensor.section for sensor in config.sensors]
    assert all(
        isinstance(s, CodecChoice) and s.js_file == tmp_path / "codecs" / "decoder.js" for s in sections
    )
    monkeypatch.chdir("/")
    server = build_drivers(config.model_copy(update={"sensors": config.sensors[:1]}))[0]
    [device] = server._devices.values()  # type: ignore[attr-defined]
    assert [(m.quantity, m.value) for m in device.codec.decode(1, bytes([21]))] == [("temperature", 21.0)]


def test_an_absolute_js_file_is_kept(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.js"
    (tmp_path / "etc").mkdir()
    config = load_config(js_config(tmp_path / "etc", str(elsewhere)))
    assert {getattr(s.section, "js_file", None) for s in config.sensors} == {elsewhere}


def test_every_family_is_exported_by_its_package_and_composed_once() -> None:
    exported = (*drivers.serial.FAMILIES, *drivers.modbus.FAMILIES, *drivers.lora.FAMILIES)
    assert exported == BUS_FAMILIES
    assert all(isinstance(f, BusFamily) for f in BUS_FAMILIES)
    tags = [f.tag for f in BUS_FAMILIES]
    assert sorted(tags) == sorted(set(tags)) == sorted(DRIVER_TAGS)
    assert set(SENSOR_MODELS) == set(tags)
    for family in BUS_FAMILIES:
        assert family.secret_fields <= SECRET_KEYS


def _path_fields(model: type) -> set[str]:
    """The fields of a section annotated with a Path, at its top level."""
    return {
        name
        for name, field in model.model_fields.items()  # type: ignore[attr-defined]
        if Path in (field.annotation, *typing.get_args(field.annotation))
    }


def test_every_path_field_of_a_section_is_declared_as_a_file_field() -> None:
    # the resolver takes only declared fields from the config's folder: an undeclared Path field is
    # what let js_file resolve against / under systemd
    for family in BUS_FAMILIES:
        assert set(family.file_fields) == _path_fields(family.section), family.tag


def test_a_secret_of_any_family_is_never_echoed() -> None:
    node = {
        "id": "n1",
        "driver": "lorawan",
        "lorawan": {
            "codec": "raw",
            "otaa": {"dev_eui": "00" * 8, "join_eui": "00" * 8, "app_key": 987654321},
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_config({"gateway_id": "gw-1", "key_file": "k.pem", "state_dir": "s", "sensors": [node]})
    assert "sensors[0].lorawan.otaa.app_key: got (secret, not shown)" in str(info.value)
    assert "987654321" not in str(info.value)


def test_a_section_of_another_family_is_refused_when_building() -> None:
    [serial, modbus, *_] = BUS_FAMILIES
    section = modbus.section.model_validate({"host": "127.0.0.1", "unit": 1, "profile": "sdm630"})
    with pytest.raises(ConfigError, match="not a serial section"):
        serial.spec("x", section, 60.0, None)


def test_drivers_come_out_in_family_order_whatever_the_config_order() -> None:
    sensors = [
        {"id": "n1", "driver": "lorawan", "lorawan": {"codec": "raw", "listen": "127.0.0.1:0", "otaa": {
            "dev_eui": "00" * 8, "join_eui": "00" * 8, "app_key": "11" * 16}}},
        {"id": "m1", "driver": "modbus", "modbus": {"host": "127.0.0.1", "unit": 1, "profile": "sdm630"}},
        {"id": "s1", "driver": "serial", "serial": {"port": "/dev/ttyNONE", "protocol": "nmea"}},
    ]  # fmt: skip
    config = GatewayConfig.model_validate(
        {"gateway_id": "g", "key_file": "k", "state_dir": "s", "sensors": sensors}
    )
    names = [type(d).__name__ for d in build_drivers(config)]
    assert names == ["SerialDriver", "ModbusBus", "PacketForwarderServer"]
