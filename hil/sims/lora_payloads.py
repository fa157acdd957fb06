"""Encoders for the sensor payload formats the LoRa simulator sends (the inverse of drivers.lora.codecs).

Layouts as documented in the codec modules; values are rounded to what each format can carry.
"""

from __future__ import annotations

import struct


def lht65(temperature: float, humidity: float, battery_v: float = 3.05, probe: float | None = None) -> bytes:
    """Dragino LHT65, FPort 2."""
    bat = (3 << 14) | round(battery_v * 1000) & 0x3FFF
    ext = 0x7FFF if probe is None else round(probe * 100)
    return struct.pack(">HhHBhH", bat, round(temperature * 100), round(humidity * 10), 1, ext, 0x7FFF)


def em300_th(temperature: float, humidity: float, battery: int = 90) -> bytes:
    """Milesight EM300-TH channel records."""
    return (
        bytes([0x01, 0x75, battery, 0x03, 0x67])
        + round(temperature * 10).to_bytes(2, "little", signed=True)
        + bytes([0x04, 0x68, round(humidity * 2)])
    )


def elsys(temperature: float, humidity: int, light: int = 0, co2: int | None = None) -> bytes:
    """Elsys ERS type/value records."""
    out = b"\x01" + round(temperature * 10).to_bytes(2, "big", signed=True) + bytes([0x02, humidity])
    out += b"\x04" + light.to_bytes(2, "big")
    if co2 is not None:
        out += b"\x06" + co2.to_bytes(2, "big")
    return out


def dl_mbx(distance_mm: int, battery_v: float = 3.0, device_id: int = 303) -> bytes:
    """Decentlab DL-MBX, distance and battery flagged."""
    return struct.pack(">BHHHHH", 2, device_id, 0x0003, distance_mm, 1, round(battery_v * 1000))


ENCODERS = {"lht65": 2, "em300_th": 1, "elsys": 1, "dl_mbx": 1}
"""The FPort each format is sent on."""


def sample_payload(codec: str, i: int) -> bytes:
    """A plausible payload number `i` of a device type (a slow sine-free ramp, deterministic)."""
    t = 5.0 + (i % 200) / 10
    if codec == "lht65":
        return lht65(t, 60.0 + i % 30, probe=t - 1)
    if codec == "em300_th":
        return em300_th(t, 40.0 + (i % 40) / 2)
    if codec == "elsys":
        return elsys(t, 50 + i % 40, light=i % 1000, co2=400 + i % 300)
    if codec == "dl_mbx":
        return dl_mbx(1500 + (i * 7) % 500)
    raise ValueError(f"no encoder for {codec!r}")
