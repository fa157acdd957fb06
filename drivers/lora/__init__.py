"""LoRa drivers: a GWMP server for LoRaWAN devices behind packet forwarders, and P2P modems (docs/lora.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drivers.base import Driver, DriverSpec
from drivers.family import BusFamily
from drivers.lora.codecs import codec_for
from drivers.lora.config import LorawanSection, ModemSection
from drivers.lora.forwarder import LorawanDevice, PacketForwarderServer
from drivers.lora.lorawan.crypto import SessionKey
from drivers.lora.lorawan.devices import DeviceProfile, OtaaIdentity, Session
from kernel.errors import ConfigError


def _key(spec: DriverSpec[LorawanSection], field: str, value: str) -> SessionKey:
    try:
        return SessionKey.from_hex(value)
    except ConfigError:
        raise ConfigError(f"sensors[{spec.sensor_id}].lorawan.{field}: must be 32 hex digits") from None


def device_profile(spec: DriverSpec[LorawanSection]) -> DeviceProfile:
    """The network's view of one configured LoRaWAN sensor (keys parsed, never echoed)."""
    section = spec.section
    if section.abp is not None:
        abp = section.abp
        session = Session(
            int(abp.devaddr, 16),
            _key(spec, "abp.nwkskey", abp.nwkskey.get_secret_value()),
            _key(spec, "abp.appskey", abp.appskey.get_secret_value()),
        )
        return DeviceProfile(spec.sensor_id, abp=session, relax_fcnt=section.relax_fcnt)
    assert section.otaa is not None
    otaa = section.otaa
    identity = OtaaIdentity(
        int(otaa.dev_eui, 16),
        int(otaa.join_eui, 16),
        _key(spec, "otaa.app_key", otaa.app_key.get_secret_value()),
    )
    return DeviceProfile(spec.sensor_id, otaa=identity, relax_fcnt=section.relax_fcnt)


def lorawan_device(spec: DriverSpec[LorawanSection]) -> LorawanDevice:
    """Profile, codec and options of one LoRaWAN sensor."""
    section = spec.section
    fports = frozenset(section.fports) if section.fports is not None else None
    codec = codec_for(section.codec, section.js_file, section.js_timeout_ms)
    return LorawanDevice(device_profile(spec), codec, fports, section.signal_readings)


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _state_path(state_dir: Path | None, host: str, port: int) -> Path | None:
    if state_dir is None:
        return None
    return state_dir / f"lorawan-{host.replace(':', '_')}-{port}.json"


def _forwarder_servers(specs: list[DriverSpec[LorawanSection]]) -> list[Driver]:
    groups: dict[str, list[DriverSpec[LorawanSection]]] = {}
    for spec in specs:
        groups.setdefault(spec.section.listen, []).append(spec)
    servers: list[Driver] = []
    for listen, group in groups.items():
        host, port = _split_listen(listen)
        addrs = [s.section.abp.devaddr.lower() for s in group if s.section.abp is not None]
        if len(addrs) != len(set(addrs)):
            raise ConfigError(f"two LoRaWAN sensors on {listen} share a DevAddr")
        first = group[0].section
        servers.append(
            PacketForwarderServer(
                host,
                port,
                [lorawan_device(s) for s in group],
                state_path=_state_path(group[0].state_dir, host, port),
                dedup_window_s=max(s.section.dedup_window_s for s in group),
                net_id=int(first.net_id, 16),
                join_rx_window=first.join_rx_window,
            )
        )
    return servers


def build_drivers(specs: Sequence[DriverSpec[LorawanSection] | DriverSpec[ModemSection]]) -> list[Driver]:
    """One GWMP server per listen address (for all its LoRaWAN sensors) and one driver per modem."""
    from drivers.lora.modem.driver import ModemDriver

    lorawan: list[DriverSpec[LorawanSection]] = []
    drivers: list[Driver] = []
    for spec in specs:
        if isinstance(spec.section, LorawanSection):
            lorawan.append(spec)
        elif isinstance(spec.section, ModemSection):
            drivers.append(ModemDriver.from_spec(spec))
        else:
            raise ConfigError(f"sensor {spec.sensor_id}: not a LoRa section")
    return _forwarder_servers(lorawan) + drivers


#: this package's two bus families (drivers/family.py), built together: a JavaScript codec is a file,
#: the LoRaWAN session and application keys are secrets
FAMILIES = (
    BusFamily(
        "lorawan",
        LorawanSection,
        build_drivers,
        "A LoRaWAN 1.0.x device heard through a Semtech packet forwarder.",
        file_fields=("js_file",),
        secret_fields=frozenset({"nwkskey", "appskey", "app_key"}),
    ),
    BusFamily(
        "lora_modem",
        ModemSection,
        build_drivers,
        "A point-to-point LoRa modem (RAK3172 RUI3 / RN2483) on a serial port.",
        file_fields=("js_file",),
    ),
)

__all__ = ["FAMILIES", "PacketForwarderServer", "build_drivers", "device_profile"]
