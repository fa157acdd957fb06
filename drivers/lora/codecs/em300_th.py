"""Milesight EM300-TH temperature/humidity sensor: channel/type/value records.

Layout from Milesight's EM300-TH user guide ("Uplink data"): records of
channel id, channel type and a value; 01 75 battery (uint8 %), 03 67 temperature
(int16 little-endian / 10 °C), 04 68 humidity (uint8 / 2 %). Channel 0xFF carries device
information records (fixed sizes below) that hold no measurement.
"""

from __future__ import annotations

from drivers.lora.codecs import Measurement
from kernel.errors import ProtocolError

#: device-information records on channel 0xFF: type -> value length
_INFO_SIZES = {0x01: 1, 0x09: 2, 0x0A: 2, 0x0B: 1, 0x0F: 1, 0x16: 8}


class Em300ThCodec:
    """Decoder for Milesight EM300-TH periodic uplinks."""

    name = "em300_th"

    def decode(self, fport: int | None, payload: bytes) -> list[Measurement]:
        """Battery, temperature and humidity, in the order the device sent them."""
        out: list[Measurement] = []
        i = 0
        while i < len(payload):
            if i + 2 > len(payload):
                raise ProtocolError("EM300-TH: truncated record header")
            channel, kind = payload[i], payload[i + 1]
            i += 2
            size = self._size(channel, kind)
            value = payload[i : i + size]
            if len(value) != size:
                raise ProtocolError(f"EM300-TH: truncated record {channel:02x} {kind:02x}")
            i += size
            if (channel, kind) == (0x01, 0x75):
                out.append(Measurement("battery", value[0], "%"))
            elif (channel, kind) == (0x03, 0x67):
                out.append(
                    Measurement("temperature", int.from_bytes(value, "little", signed=True) / 10, "°C")
                )
            elif (channel, kind) == (0x04, 0x68):
                out.append(Measurement("humidity", value[0] / 2, "%"))
        return out

    @staticmethod
    def _size(channel: int, kind: int) -> int:
        if (channel, kind) in ((0x01, 0x75), (0x04, 0x68)):
            return 1
        if (channel, kind) == (0x03, 0x67):
            return 2
        if channel == 0xFF and kind in _INFO_SIZES:
            return _INFO_SIZES[kind]
        raise ProtocolError(f"EM300-TH: unknown record {channel:02x} {kind:02x}")
