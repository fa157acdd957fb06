"""The agent's one TOML configuration file, validated by pydantic v2 models."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from drivers.family import BusFamily
from gateway.buses import BUS_FAMILIES, FAMILY_BY_TAG
from kernel.errors import ConfigError

#: the example configuration shipped with the project (what `gateway demo` runs)
_SOURCE_EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example.toml"
#: the repository's config/example.toml, or the copy an installed wheel carries (pyproject force-include)
EXAMPLE_CONFIG = (
    _SOURCE_EXAMPLE if _SOURCE_EXAMPLE.exists() else Path(__file__).resolve().parent / "data" / "example.toml"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_Section = TypeVar("_Section", bound=BaseModel)


class BufferConfig(_Strict):
    """The SQLite store on the gateway (see docs/buffer.md)."""

    commit_interval_s: float = Field(default=1.0, gt=0, le=60)
    max_rows_per_commit: int = Field(default=10_000, gt=0)
    max_bytes: int = Field(default=1 << 30, gt=0)
    min_free_bytes: int = Field(default=64 << 20, ge=0)
    policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    keep_raw_s: float = Field(default=24 * 3600, ge=0)


class BatchingConfig(_Strict):
    """When committed readings are sealed into signed batches (gateway.sealing, docs/lte.md)."""

    max_delay_s: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="the longest a reading may wait before it is on its way; 5 s when neither this nor slice_s is set",
    )
    slice_s: float | None = Field(
        default=None, gt=0, le=3600, description="deprecated: the old fixed slice, now read as max_delay_s"
    )
    target_readings: int = Field(
        default=20_000, gt=0, description="seal before the budget as soon as this many readings wait"
    )
    max_readings: int = Field(default=50_000, gt=0, le=1_000_000, description="the wire format's limit")
    catalogue_every_batches: int = Field(
        default=96,
        ge=1,
        description="every Nth batch carries the whole series table again (docs/wire-format.md 3.5); 1: every batch",
    )
    catalogue_every_s: float = Field(
        default=6 * 3600,
        gt=0,
        le=7 * 86_400,
        description="... and the first batch after this long: bounds how long a receiver that lost the table waits",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> BatchingConfig:
        if self.max_delay_s is not None and self.slice_s is not None:
            raise ValueError("slice_s is deprecated and means max_delay_s: set only max_delay_s")
        return self

    @property
    def budget_s(self) -> float:
        """The gateway's latency budget (a reading waited up to one slice before, so slice_s is one)."""
        return self.max_delay_s or self.slice_s or 5.0


class MqttConfig(_Strict):
    """MQTT broker the batches are published to (QoS 1)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, gt=0, lt=65536)
    topic: str = "gateways/{gateway_id}/batches"
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT 5 (topic aliases where the broker allows them; 3.1.1 when the broker refuses 5) or 3.1.1",
    )
    client_id: str | None = None
    keepalive_s: int | None = Field(
        default=None, gt=0, description="MQTT keepalive; by default chosen from uplink.nat_timeout_s"
    )
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    tls_min_version: Literal["1.3", "1.2"] = Field(
        default="1.3",
        description="1.3: a ClientHello of about 250 instead of 517 bytes per connect (docs/lte.md); "
        "1.2 only for a broker without TLS 1.3",
    )


class HttpsConfig(_Strict):
    """HTTPS endpoint every batch is POSTed to, one per request (docs/wire-format.md, 6.1)."""

    url: str | None = Field(
        default=None, description="https://host[:port]/path; {gateway_id} is replaced by the gateway's id"
    )
    ca_file: Path | None = Field(default=None, description="PEM trust anchors; the system's when not given")
    client_cert_file: Path | None = Field(default=None, description="PEM client certificate, for mutual TLS")
    client_key_file: Path | None = None
    token_file: Path | None = Field(default=None, description="a bearer token, sent as Authorization")

    @field_validator("url")
    @classmethod
    def _https_only(cls, url: str | None) -> str | None:
        if url is None:
            return None
        scheme, _, rest = url.partition("://")
        if scheme.lower() != "https" or not rest or rest.startswith("/"):
            raise ValueError(f"expected an https:// URL with a host, got {url!r}")
        return url

    @model_validator(mode="after")
    def _cert_with_key(self) -> HttpsConfig:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("client_cert_file and client_key_file go together")
        return self


class UplinkConfig(_Strict):
    """Which transport carries the outbox to the backend."""

    transport: Literal["mqtt", "https"] = "mqtt"
    mqtt: MqttConfig = MqttConfig()
    https: HttpsConfig = HttpsConfig()
    ack_timeout_s: float = Field(default=15.0, gt=0)
    max_inflight: int = Field(default=8, gt=0, le=64)
    nat_timeout_s: float = Field(
        default=300,
        gt=0,
        description="how long the carrier's NAT keeps an idle TCP mapping: keepalive and idle disconnects follow it",
    )
    connect_on_demand: bool = Field(
        default=True,
        description="disconnect when idle longer than nat_timeout_s with nothing to send; reconnect when there is",
    )
    heartbeat_s: float = Field(
        default=21_600,
        ge=0,
        description="after this long without a sealed batch, seal one carrying an agent.heartbeat event"
        " (so the backend can tell an idle gateway from a dead one); 0 disables",
    )

    @model_validator(mode="after")
    def _https_has_url(self) -> UplinkConfig:
        if self.transport == "https" and self.https.url is None:
            raise ValueError("transport 'https' needs https.url")
        return self


WindowStatistic = Literal["min", "max", "mean", "std", "first", "last"]
ALL_WINDOW_STATISTICS: tuple[WindowStatistic, ...] = ("min", "max", "mean", "std", "first", "last")


class WindowConfig(_Strict):
    """Per-sensor windowed statistics (gateway.aggregation; docs/wire-format.md, "Windows")."""

    length_s: float = Field(default=60, ge=1, le=86_400, description="window length, 1 s to 1 day")
    upload: Literal["windows", "raw", "both"] = Field(
        default="windows", description="windows only, raw readings only (no windows), or both"
    )
    statistics: list[WindowStatistic] = Field(
        default_factory=lambda: list(ALL_WINDOW_STATISTICS),
        min_length=1,
        description="what each window carries besides count, NaN count and first/last timestamps",
    )
    allowed_lateness_s: float = Field(default=10, ge=0, description="a window closes this long after its end")
    max_lateness_s: float = Field(
        default=3600,
        ge=0,
        description="readings later than this after the window end travel raw, flagged late",
    )

    @model_validator(mode="after")
    def _lateness_order(self) -> WindowConfig:
        if self.max_lateness_s < self.allowed_lateness_s:
            raise ValueError("max_lateness_s must be >= allowed_lateness_s")
        if round(self.length_s * 1000) != self.length_s * 1000:
            raise ValueError("length_s must be a whole number of milliseconds")
        return self


class SensorBase(_Strict):
    """Fields every sensor has, whatever its driver."""

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
    enabled: bool = True
    stale_after_s: float = Field(default=120, gt=0)
    time_resolution_ms: int = Field(default=1, ge=1, le=86_400_000)
    resolution: dict[str, float] = Field(
        default_factory=dict, description="per quantity: the value step the sensor really has"
    )
    windows: WindowConfig | None = None
    max_delay_s: float | None = Field(
        default=None, gt=0, le=86_400, description="this sensor's latency budget (else batching.max_delay_s)"
    )
    send_immediately_above: dict[str, float] = Field(
        default_factory=dict, description="per quantity: a reading above this is sealed and sent at once"
    )
    send_immediately_below: dict[str, float] = Field(
        default_factory=dict, description="per quantity: a reading below this is sealed and sent at once"
    )

    limits: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description=(
            "quantity -> [low, high]: physical limits replacing the default (gateway/plausibility.py);"
            " a value outside is stored flagged OUT_OF_RANGE"
        ),
    )

    @field_validator("limits")
    @classmethod
    def _ordered_limits(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for quantity, (low, high) in value.items():
            if not low < high:
                raise ValueError(
                    f"limits of {quantity!r} must be [low, high] with low < high, got {[low, high]}"
                )
        return value

    @field_validator("resolution")
    @classmethod
    def _positive_steps(cls, value: dict[str, float]) -> dict[str, float]:
        for quantity, step in value.items():
            if not step > 0:
                raise ValueError(f"resolution of {quantity!r} must be > 0")
        return value


class BusSensor(SensorBase):
    """A sensor of one bus family: `driver` names the family and the section holding its settings."""

    driver: str

    @property
    def section(self) -> BaseModel:
        """The family's own section (`[sensors.<driver>]`)."""
        section: BaseModel = getattr(self, self.driver)
        return section

    @property
    def family(self) -> BusFamily[Any]:
        """The bus family serving this sensor."""
        return FAMILY_BY_TAG[self.driver]


def _sensor_model(family: BusFamily[Any]) -> type[BusSensor]:
    """`driver = "<tag>"` plus a required `<tag>` section: SerialSensor, ModbusSensor, LorawanSensor, ..."""
    name = "".join(part.capitalize() for part in family.tag.split("_")) + "Sensor"
    fields: dict[str, Any] = {
        "driver": (cast(Any, Literal)[family.tag], ...),
        family.tag: (family.section, ...),
    }
    return create_model(name, __base__=BusSensor, __doc__=family.summary, __module__=__name__, **fields)


#: one config model per bus family, by tag
SENSOR_MODELS: dict[str, type[BusSensor]] = {family.tag: _sensor_model(family) for family in BUS_FAMILIES}

if TYPE_CHECKING:  # every member of the union is a BusSensor; which one is known only at run time
    Sensor = BusSensor
else:
    Sensor = Annotated[Union[tuple(SENSOR_MODELS.values())], Field(discriminator="driver")]  # noqa: UP007


class LoggingConfig(_Strict):
    """Log level and format (JSON when stdout is not a TTY)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ClockConfig(_Strict):
    """How the agent judges its wall clock (gateway.clock; docs/buffer.md, "Clock")."""

    check: Literal["kernel", "off"] = Field(
        default="kernel",
        description="kernel: flag readings CLOCK_UNSYNCED while adjtimex says unsynchronised; off: never",
    )
    step_threshold_ms: int = Field(
        default=1_000, ge=1, description="a jump of the wall clock reported as a step"
    )


class GatewayConfig(_Strict):
    """The whole agent configuration."""

    gateway_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    key_file: Path
    state_dir: Path
    buffer: BufferConfig = BufferConfig()
    batching: BatchingConfig = BatchingConfig()
    uplink: UplinkConfig = UplinkConfig()
    logging: LoggingConfig = LoggingConfig()
    clock: ClockConfig = ClockConfig()
    sensors: list[Sensor] = Field(default_factory=list)

    @field_validator("sensors")
    @classmethod
    def _unique_ids(cls, value: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for sensor in value:
            if sensor.id in seen:
                raise ValueError(f"sensor id {sensor.id!r} is used twice")
            seen.add(sensor.id)
        return value

    @model_validator(mode="after")
    def _raw_kept_for_revisions(self) -> GatewayConfig:
        """After a restart, windows are rebuilt from the raw readings still on the gateway."""
        for sensor in self.sensors:
            w = sensor.windows
            if w is not None and w.length_s + w.max_lateness_s > self.buffer.keep_raw_s:
                raise ValueError(
                    f"sensor {sensor.id!r}: buffer.keep_raw_s ({self.buffer.keep_raw_s:g}) must be at least "
                    f"windows.length_s + windows.max_lateness_s ({w.length_s + w.max_lateness_s:g}), "
                    "or a restart could not rebuild the windows that may still be revised"
                )
        return self


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


DRIVER_TAGS = frozenset(FAMILY_BY_TAG)
#: values under these keys are secrets: a config error names the key, never the value (the uplink's
#: password and each bus family's own)
SECRET_KEYS = frozenset({"password"}).union(*(family.secret_fields for family in BUS_FAMILIES))


def _without_tags(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop the discriminator value pydantic inserts after `sensors[i]`."""
    if len(loc) > 2 and loc[0] == "sensors" and isinstance(loc[1], int) and loc[2] in DRIVER_TAGS:
        return loc[:2] + loc[3:]
    return loc


def describe_errors(error: ValidationError) -> list[str]:
    """One line per problem: key path, offending value, what was expected."""
    lines = []
    for item in error.errors(include_url=False):
        loc = _without_tags(tuple(item["loc"]))
        value = item.get("input")
        shown = "(missing)" if item["type"] == "missing" else repr(value)
        if any(isinstance(part, str) and part in SECRET_KEYS for part in loc):
            shown = "(secret, not shown)"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{_key_path(loc)}: got {shown}; expected: {item['msg']}")
    return lines


def parse_config(data: dict[str, Any], *, base_dir: Path | None = None) -> GatewayConfig:
    """Validate a parsed TOML document; relative paths are taken from `base_dir`."""
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(describe_errors(exc))) from None
    if base_dir is not None:
        for sensor in config.sensors:
            if sensor.family.file_fields:
                setattr(
                    sensor, sensor.driver, _files_from(base_dir, sensor.section, sensor.family.file_fields)
                )
        config.uplink.mqtt = _files_from(base_dir, config.uplink.mqtt, ("ca_file",))
        config.uplink.https = _files_from(base_dir, config.uplink.https, _HTTPS_FILES)
        config = _files_from(base_dir, config, ("key_file", "state_dir"))
    return config


_HTTPS_FILES = ("ca_file", "client_cert_file", "client_key_file", "token_file")


def _files_from(base_dir: Path, section: _Section, names: tuple[str, ...]) -> _Section:
    """The section with its relative file paths taken from base_dir."""
    update = {}
    for name in names:
        path = getattr(section, name)
        if path is not None and not path.is_absolute():
            update[name] = base_dir / path
    return section.model_copy(update=update) if update else section


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a config file; ConfigError names every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, base_dir=path.parent.resolve())
