"""Config sections of LoRa sensors: `[sensors.lorawan]` (via a packet forwarder) and `[sensors.lora_modem]`.

Keys are `SecretStr`: they never appear in reprs or logs. Their hex format is checked when the
drivers are built (ConfigError naming the sensor and field, never the value), not here, because
pydantic's validation errors carry the raw input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

CodecName = Literal["lht65", "em300_th", "elsys", "dl_mbx", "raw", "js"]
Hex4 = Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{8}$", description="4 bytes, big-endian hex")]
Hex8 = Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{16}$", description="8 bytes, big-endian hex")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AbpKeys(_Strict):
    """Activation by personalisation: a fixed DevAddr and session keys."""

    devaddr: Hex4
    nwkskey: SecretStr
    appskey: SecretStr


class OtaaKeys(_Strict):
    """Over-the-air activation: the device joins through this gateway."""

    dev_eui: Hex8
    join_eui: Hex8 = Field(description="JoinEUI (AppEUI in LoRaWAN 1.0)")
    app_key: SecretStr


class CodecChoice(_Strict):
    """Which payload codec turns the device's bytes into readings."""

    codec: CodecName = "raw"
    js_file: Path | None = Field(default=None, description="TTN/ChirpStack decodeUplink() script")
    js_timeout_ms: int = Field(default=100, gt=0, le=5000)

    @model_validator(mode="after")
    def _js_needs_file(self) -> CodecChoice:
        if self.codec == "js" and self.js_file is None:
            raise ValueError("codec 'js' needs js_file")
        return self


class LorawanSection(CodecChoice):
    """A LoRaWAN 1.0.x device heard through the Semtech packet forwarder (GWMP over UDP)."""

    abp: AbpKeys | None = None
    otaa: OtaaKeys | None = None
    listen: str = Field(
        default="127.0.0.1:1700",
        pattern=r"^[^:]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$",
        description="UDP host:port the packet forwarder sends to (devices sharing it share one server)",
    )
    fports: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(
        default=None, description="only these FPorts carry measurements (default: all but 0)"
    )
    relax_fcnt: bool = Field(default=False, description="accept a frame counter that restarted")
    dedup_window_s: float = Field(default=0.2, ge=0, le=5)
    net_id: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{6}$")] = "000000"
    join_rx_window: Literal[1, 2] = 1
    signal_readings: bool = Field(default=True, description="emit rssi/snr readings per uplink")

    @model_validator(mode="after")
    def _one_activation(self) -> LorawanSection:
        if (self.abp is None) == (self.otaa is None):
            raise ValueError("configure exactly one of [abp] or [otaa]")
        return self


class ModemSection(CodecChoice):
    """A point-to-point LoRa modem on a serial port (no LoRaWAN: raw payloads)."""

    modem: Literal["rak3172", "rn2483"]
    port: str = Field(description="device path, ideally /dev/serial/by-id/...")
    baud: int | None = Field(default=None, gt=0, description="default: 115200 RAK3172, 57600 RN2483")
    frequency_hz: int = Field(default=868_100_000, ge=137_000_000, le=1_020_000_000)
    spreading_factor: int = Field(default=7, ge=5, le=12)
    bandwidth_khz: Literal[125, 250, 500] = 125
    coding_rate: Literal["4/5", "4/6", "4/7", "4/8"] = "4/5"
    preamble: int = Field(default=8, ge=6, le=65535)
    tx_power_dbm: int = Field(default=14, ge=-3, le=22)
    fport: int | None = Field(default=1, ge=0, le=255, description="FPort handed to the codec")
    signal_readings: bool = True
    reopen_initial_s: float = Field(default=0.5, gt=0, le=60)
    reopen_cap_s: float = Field(default=30.0, gt=0, le=3600)

    def effective_baud(self) -> int:
        """The configured baud rate or the modem's factory default."""
        return self.baud or (115200 if self.modem == "rak3172" else 57600)
