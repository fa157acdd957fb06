"""Payload codecs: the application bytes of one device type to measurements.

Each codec is sans-I/O: `decode(fport, payload)` returns measurements or raises ProtocolError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kernel.errors import ConfigError
from kernel.model import Quality


@dataclass(frozen=True, slots=True)
class Measurement:
    """One decoded value, before it gets its sensor id and timestamp."""

    quantity: str
    value: float
    unit: str
    quality: Quality = Quality.OK


class PayloadCodec(Protocol):
    """Turns one device type's FRMPayload into measurements."""

    name: str

    def decode(self, fport: int | None, payload: bytes) -> list[Measurement]:
        """Measurements in the payload; ProtocolError when it is not this device's format."""
        ...


NATIVE_CODECS = ("lht65", "em300_th", "elsys", "dl_mbx", "raw")


def codec_for(name: str, js_file: Path | None = None, js_timeout_ms: int = 100) -> PayloadCodec:
    """The codec configured for a device: a built-in one by name, or a JavaScript file."""
    from drivers.lora.codecs import dl_mbx, elsys, em300_th, lht65, raw

    native: dict[str, type[PayloadCodec]] = {
        "lht65": lht65.Lht65Codec,
        "em300_th": em300_th.Em300ThCodec,
        "elsys": elsys.ElsysCodec,
        "dl_mbx": dl_mbx.DlMbxCodec,
        "raw": raw.RawCodec,
    }
    if name == "js":
        if js_file is None:
            raise ConfigError("codec 'js' needs js_file")
        from drivers.lora.codecs.javascript import JavascriptCodec

        return JavascriptCodec.from_file(js_file, timeout_ms=js_timeout_ms)
    try:
        return native[name]()
    except KeyError:
        raise ConfigError(f"unknown payload codec {name!r}") from None
