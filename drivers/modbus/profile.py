"""Device profiles: a register map in `config/profiles/<name>.toml`, validated by pydantic."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers.modbus.planner import AddressRange, PlanLimits
from drivers.modbus.registers import DataType, RegisterKind, WordOrder, register_count
from kernel.errors import ConfigError

#: profiles shipped with the agent: the repository's config/profiles, or the copy a wheel carries
_REPOSITORY_PROFILES = Path(__file__).resolve().parents[2] / "config" / "profiles"
SHIPPED_PROFILES = (
    _REPOSITORY_PROFILES if _REPOSITORY_PROFILES.is_dir() else Path(__file__).resolve().parent / "profiles"
)

Quantity = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RegisterField(_Frozen):
    """One value of a device: where it lives, how it is encoded and what it measures."""

    quantity: Quantity
    unit: str = Field(max_length=16, description="SenML/UCUM unit, e.g. V, A, W, Wh, m, mA, Hz")
    kind: RegisterKind
    address: int = Field(ge=0, le=0xFFFF, description="0-based PDU address (30001 -> 0)")
    dtype: DataType = Field(alias="type")
    order: WordOrder | None = Field(default=None, description="default: the profile's order")
    length: int = Field(default=1, ge=1, le=125, description="registers of a string")
    bit: int = Field(default=0, ge=0, le=15, description="first bit of a bit field")
    width: int = Field(default=1, ge=1, le=16, description="bits of a bit field")
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> RegisterField:
        if self.kind.is_bit and self.dtype is not DataType.BOOL:
            raise ValueError(f"a {self.kind} holds single bits: type must be bool")
        if self.bit + self.width > 16:
            raise ValueError("bit + width must be at most 16")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) the field occupies."""
        return 1 if self.kind.is_bit else register_count(self.dtype, self.length)

    @property
    def numeric(self) -> bool:
        """Strings are for identification (CLI), only numbers become readings."""
        return self.dtype is not DataType.STRING


class ForbiddenRange(_Frozen):
    """Addresses the planner must never read (devices that fault or reset when they are read)."""

    kind: RegisterKind
    start: int = Field(ge=0, le=0xFFFF)
    end: int = Field(ge=0, le=0xFFFF, description="last forbidden address (inclusive)")

    @model_validator(mode="after")
    def _ordered(self) -> ForbiddenRange:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}: the range would forbid nothing")
        return self


class RegisterMap(_Frozen):
    """A device profile: its fields plus what the device tolerates in one read."""

    name: str
    manual: str = Field(description="which public manual and version the map comes from")
    order: WordOrder = WordOrder.ABCD
    max_gap: int = Field(default=0, ge=0, le=124, description="unused addresses a read may span")
    max_registers: int = Field(default=125, ge=1, le=125)
    max_bits: int = Field(default=2000, ge=1, le=2000)
    forbidden: tuple[ForbiddenRange, ...] = ()
    fields: tuple[RegisterField, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_quantities(self) -> RegisterMap:
        seen: set[str] = set()
        for field in self.fields:
            if field.quantity in seen:
                raise ValueError(f"quantity {field.quantity!r} appears twice")
            seen.add(field.quantity)
        return self

    def order_of(self, field: RegisterField) -> WordOrder:
        """The byte/word order that applies to `field`."""
        return field.order or self.order

    def limits(self, *, max_gap: int | None = None, forbidden: tuple[ForbiddenRange, ...] = ()) -> PlanLimits:
        """Planner limits of this profile, optionally overridden by a sensor's section."""
        ranges = tuple(AddressRange(r.kind, r.start, r.end) for r in (*self.forbidden, *forbidden))
        return PlanLimits(
            max_gap=self.max_gap if max_gap is None else max_gap,
            max_registers=self.max_registers,
            max_bits=self.max_bits,
            forbidden=ranges,
        )


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        shown = "(missing)" if item["type"] == "missing" else repr(item.get("input"))[:60]
        lines.append(f"{source}: {path}: got {shown}; expected: {item['msg']}")
    return "\n".join(lines)


def parse_profile(data: dict[str, Any], source: str = "profile") -> RegisterMap:
    """Validate a parsed profile document; ConfigError names each bad key."""
    try:
        return RegisterMap.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def load_profile(name: str, directory: Path | None = None) -> RegisterMap:
    """Read `<directory>/<name>.toml` (default: the shipped profiles)."""
    path = (directory or SHIPPED_PROFILES) / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"profile {name!r}: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {name!r}: {path} is not valid TOML: {exc}") from None
    return parse_profile(data, str(path))
