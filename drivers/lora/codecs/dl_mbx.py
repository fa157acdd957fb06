"""Decentlab DL-MBX ultrasonic distance / water-level sensor (Decentlab protocol version 2).

Layout from Decentlab's DL-MBX datasheet ("Payload"): version (1 byte, = 2), device id
(uint16), sensor flags (uint16), then for each flagged sensor its uint16 big-endian values:
flag bit 0 = distance sensor (distance mm, number of valid samples), bit 1 = battery
(millivolts).
"""

from __future__ import annotations

from drivers.lora.codecs import Measurement
from kernel.errors import ProtocolError
from kernel.model import Quality

_PROTOCOL_VERSION = 2


class DlMbxCodec:
    """Decoder for Decentlab DL-MBX uplinks."""

    name = "dl_mbx"

    def decode(self, fport: int | None, payload: bytes) -> list[Measurement]:
        """Distance (with its valid-sample count) and battery voltage, as flagged."""
        if len(payload) < 5:
            raise ProtocolError(f"DL-MBX: {len(payload)} bytes is too short")
        if payload[0] != _PROTOCOL_VERSION:
            raise ProtocolError(f"DL-MBX: protocol version {payload[0]} is not 2")
        flags = int.from_bytes(payload[3:5], "big")
        want = 2 * ((2 if flags & 1 else 0) + (1 if flags & 2 else 0))
        values = payload[5:]
        if flags & ~0x3 or len(values) != want:
            raise ProtocolError(f"DL-MBX: flags {flags:#06x} do not match {len(values)} value bytes")
        words = [int.from_bytes(values[i : i + 2], "big") for i in range(0, len(values), 2)]
        out: list[Measurement] = []
        if flags & 1:
            distance, samples = words[0], words[1]
            quality = Quality.OK if samples > 0 else Quality.INVALID
            out.append(Measurement("distance", distance, "mm", quality))
            out.append(Measurement("valid_samples", samples, ""))
            words = words[2:]
        if flags & 2:
            out.append(Measurement("battery_voltage", words[0] / 1000, "V"))
        return out
