"""The `[sensors.serial]` section of a serial sensor (validated by pydantic)."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: pause the pollers keep between two commands (see drivers.serial.polling.COMMAND_GAP_S)
_COMMAND_GAPS_S = 0.6
_QUANTITY = r"^[a-z][a-z0-9_]*$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rs485Options(_Section):
    """Half-duplex RS485 through the kernel's RTS direction control (TIOCSRS485)."""

    rts_level_for_tx: bool = True
    delay_before_tx_s: float | None = Field(default=None, ge=0, le=1)
    delay_before_rx_s: float | None = Field(default=None, ge=0, le=1)


class PollingOptions(_Section):
    """How a commanded sensor (sds011, pms5003, wxt) is driven; NMEA and regex sensors just talk."""

    mode: Literal["active", "query"] = Field(
        default="active", description="active: the sensor streams; query: the gateway asks every interval_s"
    )
    interval_s: float = Field(default=1.0, gt=0, le=86_400, description="query or duty cycle period")
    warmup_s: float | None = Field(
        default=None,
        gt=0,
        le=600,
        description="duty cycling: wake, warm up this long, read, sleep (implies query mode)",
    )
    read_s: float = Field(default=1.0, gt=0, le=60, description="duty cycling: time to wait for the answer")
    setup: bool = Field(default=True, description="active mode: send wake + active-mode commands on open")

    @model_validator(mode="after")
    def _cycle_fits(self) -> Self:
        if self.warmup_s is not None and self.warmup_s + self.read_s + _COMMAND_GAPS_S >= self.interval_s:
            raise ValueError("warmup_s + read_s (+0.6 s of command pauses) must be shorter than interval_s")
        return self


class RegexField(_Section):
    """What one named group of a regex line sensor measures: value = float(group) * scale + offset."""

    quantity: str = Field(pattern=_QUANTITY)
    unit: str = Field(min_length=1, description='SenML unit, e.g. "Cel", "%RH", "hPa"')
    scale: float = 1.0
    offset: float = 0.0


class RegexOptions(_Section):
    """A generic ASCII line sensor: a Python regex with named groups, each mapped to a quantity."""

    pattern: str = Field(description=r"e.g. '^T=(?P<t>-?\d+\.\d+);H=(?P<h>\d+(\.\d+)?)'")
    fields: dict[str, RegexField] = Field(min_length=1)

    @model_validator(mode="after")
    def _groups_exist(self) -> Self:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regex: {exc}") from None
        missing = sorted(set(self.fields) - set(compiled.groupindex))
        if missing:
            raise ValueError(f"fields {missing} are not named groups (?P<name>...) of the pattern")
        return self


class SerialSection(_Section):
    """Where and how to open a serial sensor, and which codec reads it."""

    port: str = Field(description="device path, ideally /dev/serial/by-id/...")
    baud: int = Field(default=9600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: Literal[1, 2] = 1
    protocol: Literal["nmea", "sds011", "pms5003", "wxt", "regex"] = "nmea"
    rs485: Rs485Options | None = None
    reopen_initial_s: float = Field(default=0.5, gt=0, le=60, description="first reopen delay")
    reopen_cap_s: float = Field(default=30.0, gt=0, le=3600, description="longest reopen delay")
    xdr_names: dict[str, str] = Field(
        default_factory=dict,
        description='nmea: XDR transducer name (or "type:name") -> quantity, e.g. {"C:1" = "water_temperature"}',
    )
    polling: PollingOptions = PollingOptions()
    wxt_address: str = Field(default="0", pattern=r"^[0-9A-Za-z]$", description="wxt: device address")
    wxt_crc: bool = Field(
        default=False, description="wxt, query mode: poll in lower case for CRC-protected answers"
    )
    regex: RegexOptions | None = Field(default=None, description="regex: the line pattern and its fields")

    @model_validator(mode="after")
    def _protocol_options(self) -> Self:
        if (self.protocol == "regex") != (self.regex is not None):
            raise ValueError('a [regex] table is required with protocol = "regex" and only there')
        commanded = self.polling.mode == "query" or self.polling.warmup_s is not None
        if commanded and self.protocol in ("nmea", "regex"):
            raise ValueError(f"protocol {self.protocol!r} cannot be polled; use polling.mode = 'active'")
        if self.polling.warmup_s is not None and self.protocol == "wxt":
            raise ValueError("a WXT has no sleep mode: use polling.mode = 'query' without warmup_s")
        return self
