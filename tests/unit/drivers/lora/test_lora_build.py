"""build_drivers: config sections to drivers (one GWMP server per listen address, one per modem)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.base import DriverSpec
from drivers.lora import build_drivers
from drivers.lora.config import LorawanSection, ModemSection
from drivers.lora.forwarder import PacketForwarderServer
from drivers.lora.modem.driver import ModemDriver
from kernel.errors import ConfigError

NWK = "44024241ed4ce9a68c6a8bc055233fd3"
APP = "ec925802ae430ca77fd3dd73cb2cc588"


def abp(devaddr: str, **extra: object) -> LorawanSection:
    return LorawanSection.model_validate(
        {"abp": {"devaddr": devaddr, "nwkskey": NWK, "appskey": APP}, **extra}
    )


def test_devices_sharing_a_listen_address_share_one_server(tmp_path: Path) -> None:
    specs = [
        DriverSpec("a", abp("26011f01", codec="lht65"), state_dir=tmp_path),
        DriverSpec("b", abp("26011f02", codec="dl_mbx"), state_dir=tmp_path),
        DriverSpec("c", abp("26011f03", listen="0.0.0.0:1701")),
        DriverSpec("m", ModemSection(modem="rn2483", port="/dev/ttyUSB0")),
    ]
    drivers = build_drivers(specs)  # type: ignore[arg-type]
    servers = [d for d in drivers if isinstance(d, PacketForwarderServer)]
    assert sorted((s.host, s.port) for s in servers) == [("0.0.0.0", 1701), ("127.0.0.1", 1700)]
    assert sum(isinstance(d, ModemDriver) for d in drivers) == 1


def test_keys_are_hidden_in_config_repr() -> None:
    section = abp("26011f01")
    assert NWK not in repr(section) and APP not in repr(section)
    assert NWK not in section.model_dump_json()


def test_bad_key_is_a_config_error_naming_the_field_not_the_value() -> None:
    section = LorawanSection.model_validate(
        {"abp": {"devaddr": "26011f01", "nwkskey": "not-a-key-123", "appskey": APP}}
    )
    with pytest.raises(ConfigError, match=r"abp\.nwkskey") as info:
        build_drivers([DriverSpec("x", section)])
    assert "not-a-key-123" not in str(info.value)


def test_duplicate_devaddr_is_refused() -> None:
    with pytest.raises(ConfigError, match="DevAddr"):
        build_drivers([DriverSpec("a", abp("26011f01")), DriverSpec("b", abp("26011F01"))])


def test_section_needs_exactly_one_activation_and_js_needs_a_file() -> None:
    with pytest.raises(ValidationError):
        LorawanSection.model_validate({})
    with pytest.raises(ValidationError):
        abp("26011f01", codec="js")
    otaa = LorawanSection.model_validate(
        {"otaa": {"dev_eui": "70b3d57ed0001234", "join_eui": "70b3d57ed0000000", "app_key": NWK}}
    )
    [server] = build_drivers([DriverSpec("o", otaa)])
    assert isinstance(server, PacketForwarderServer)


def test_demo_sensor_file_matches_the_simulator_devices() -> None:
    import tomllib

    from hil.sims.packet_forwarder import DEMO_DEVICES

    root = Path(__file__).resolve().parents[4]
    config = tomllib.loads((root / "config/lorawan/demo-sensors.toml").read_text())
    configured = {
        s["id"]: (
            int(s["lorawan"]["abp"]["devaddr"], 16),
            s["lorawan"]["abp"]["nwkskey"],
            s["lorawan"]["abp"]["appskey"],
            s["lorawan"]["codec"],
        )
        for s in config["sensors"]
    }
    assert configured == {d.device_id: (d.devaddr, d.nwkskey, d.appskey, d.codec) for d in DEMO_DEVICES}
