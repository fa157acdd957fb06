"""Dragino LHT65 temperature/humidity sensor (FPort 2, 11 bytes, big-endian).

Layout from Dragino's LHT65 user manual ("Uplink payload"): BAT (2 bytes: status in the top two
bits, millivolts in the rest), SHT20 temperature (int16 / 100 °C), SHT20 humidity (uint16 / 10 %),
external sensor type (1 byte), external value (4 bytes; type 1 = DS18B20: int16 / 100 °C).
0x7FFF as the external temperature means no probe is connected.
"""

from __future__ import annotations

import struct

from drivers.lora.codecs import Measurement
from kernel.errors import ProtocolError
from kernel.model import Quality

_LAYOUT = struct.Struct(">HhHB")
_EXT_TEMPERATURE = 0x01
_NO_PROBE = 0x7FFF


class Lht65Codec:
    """Decoder for Dragino LHT65 periodic uplinks."""

    name = "lht65"

    def decode(self, fport: int | None, payload: bytes) -> list[Measurement]:
        """Battery voltage, internal temperature and humidity, and the external probe if any."""
        if fport != 2:
            raise ProtocolError(f"LHT65: unknown FPort {fport}")
        if len(payload) != 11:
            raise ProtocolError(f"LHT65: expected 11 bytes, got {len(payload)}")
        bat, temp, hum, ext_type = _LAYOUT.unpack_from(payload)
        battery_status = bat >> 14
        out = [
            Measurement(
                "battery_voltage",
                (bat & 0x3FFF) / 1000,
                "V",
                Quality.DEVICE_WARNING if battery_status == 0 else Quality.OK,
            ),
            Measurement("temperature", temp / 100, "°C"),
            Measurement("humidity", hum / 10, "%"),
        ]
        if ext_type == _EXT_TEMPERATURE:
            raw = struct.unpack_from(">h", payload, 7)[0]
            if raw != _NO_PROBE:
                out.append(Measurement("external_temperature", raw / 100, "°C"))
        return out
