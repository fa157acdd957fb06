"""A codec for devices without one: no measurements (the uplink is still counted and shown)."""

from __future__ import annotations

from drivers.lora.codecs import Measurement


class RawCodec:
    """Decodes nothing; useful for antenna checks and devices not yet profiled."""

    name = "raw"

    def decode(self, fport: int | None, payload: bytes) -> list[Measurement]:
        """No measurements."""
        return []
