"""The `[sensors.modbus]` section of a Modbus sensor (validated by pydantic).

Each sensor is one slave (unit id) on a bus. Sensors naming the same serial `port`, or the same
`host` and `tcp_port`, share one bus and therefore one driver with one outstanding request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.modbus.profile import ForbiddenRange


class ModbusSection(BaseModel):
    """Where the slave is (serial port or TCP host), which profile maps it, how to poll it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- the bus: exactly one of `port` (RTU over RS485) or `host` (Modbus TCP)
    port: str | None = Field(default=None, description="serial device, e.g. /dev/serial/by-id/...")
    baud: int = Field(default=9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    host: str | None = Field(default=None, description="Modbus TCP server or RTU gateway")
    tcp_port: int = Field(default=502, gt=0, lt=65536)

    # --- the slave
    unit: int = Field(ge=0, le=255, description="slave address (unit id); 1..247 on RS485")
    profile: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="config/profiles/<name>.toml")
    profiles_dir: Path | None = Field(default=None, description="default: the shipped profiles")
    fields: list[str] | None = Field(default=None, description="quantities to read; default all")
    max_gap: int | None = Field(default=None, ge=0, le=124, description="override the profile's")
    forbidden: tuple[ForbiddenRange, ...] = Field(default=(), description="added to the profile's")

    # --- polling and failure handling
    poll_interval_s: float = Field(default=10.0, gt=0, le=86_400)
    timeout_s: float = Field(default=0.5, gt=0, le=30, description="per request, per slave")
    retries: int = Field(default=1, ge=0, le=5, description="repeats after a timeout")
    dead_after: int = Field(default=3, ge=1, description="failed polls before the breaker opens")
    dead_retry_s: float = Field(default=10.0, gt=0, description="first probe delay when dead")
    dead_retry_max_s: float = Field(default=300.0, gt=0, description="cap of the probe delay")

    # --- bus timing (sensors of one bus: the largest value wins)
    connect_gap_s: float = Field(default=0.1, ge=0, le=10, description="silence after opening")
    request_gap_s: float | None = Field(
        default=None, ge=0, le=10, description="silence between requests; default 3.5 chars"
    )

    @model_validator(mode="after")
    def _one_bus(self) -> ModbusSection:
        if (self.port is None) == (self.host is None):
            raise ValueError("set exactly one of `port` (RTU) or `host` (TCP)")
        return self

    @property
    def bus_key(self) -> str:
        """Sensors with the same key share a bus (and a driver)."""
        return f"rtu:{self.port}" if self.port is not None else f"tcp:{self.host}:{self.tcp_port}"
