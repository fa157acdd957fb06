"""The LoRaWAN devices a gateway decodes itself: identities, keys and active sessions."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.lora.lorawan.crypto import SessionKey


@dataclass(frozen=True)
class Session:
    """The keys a device's data frames are checked and decrypted with."""

    devaddr: int
    nwkskey: SessionKey = field(repr=False)
    appskey: SessionKey = field(repr=False)


@dataclass(frozen=True)
class OtaaIdentity:
    """What an OTAA device joins with."""

    dev_eui: int
    join_eui: int
    app_key: SessionKey = field(repr=False)


@dataclass(frozen=True)
class DeviceProfile:
    """One configured device: ABP (a fixed session) or OTAA (an identity to join with)."""

    device_id: str
    abp: Session | None = None
    otaa: OtaaIdentity | None = None
    #: accept a frame counter that went back (an ABP device that reset); off by default
    relax_fcnt: bool = False

    def __post_init__(self) -> None:
        if (self.abp is None) == (self.otaa is None):
            raise ValueError(f"device {self.device_id}: configure exactly one of ABP or OTAA")
