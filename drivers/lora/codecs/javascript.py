"""Run an existing TTN / ChirpStack JavaScript payload formatter unchanged.

The script defines `decodeUplink(input)` with input `{bytes, fPort, recvTime}` and returns
`{data, warnings, errors}` (The Things Stack "JavaScript payload formatters" contract, also
ChirpStack v4's). It runs in QuickJS (PyPI `quickjs-ng`, wheels for x86_64 and aarch64),
as a sloppy-mode global script, one engine per device, with a CPU-time and a memory limit.
Whatever the script does (throws, loops, runs out of memory, returns nonsense) becomes a
ProtocolError for that device's uplink; the engine is rebuilt after a failure.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

from drivers.lora.codecs import Measurement
from gateway.errors import ConfigError, ProtocolError

# imported by name: quickjs-ng ships no type information
quickjs: Any = importlib.import_module("quickjs")
MEMORY_LIMIT = 16 << 20


class JavascriptCodec:
    """A device's JavaScript decoder in its own QuickJS context."""

    name = "js"

    def __init__(self, source: str, *, timeout_ms: int = 100, label: str = "<codec>") -> None:
        self._source = source
        self._timeout_s = timeout_ms / 1000
        self._label = label
        self._context: Any = None
        self._load()

    @classmethod
    def from_file(cls, path: Path, *, timeout_ms: int = 100) -> JavascriptCodec:
        """Load a formatter file; ConfigError when it cannot be read or does not compile."""
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read JavaScript codec: {exc.strerror}") from None
        return cls(source, timeout_ms=timeout_ms, label=str(path))

    def _load(self) -> Any:
        context = quickjs.Context()
        context.set_memory_limit(MEMORY_LIMIT)
        context.set_time_limit(self._timeout_s)
        try:
            context.eval(self._source)
            defined = context.eval("typeof decodeUplink === 'function'")
        except quickjs.JSException as exc:
            raise ConfigError(f"{self._label}: JavaScript does not load: {_first_line(exc)}") from None
        if not defined:
            raise ConfigError(f"{self._label}: defines no decodeUplink(input) function")
        self._context = context
        return context

    def decode_object(self, fport: int | None, payload: bytes, recv_time: str = "") -> dict[str, Any]:
        """The formatter's raw `{data, warnings, errors}` answer."""
        context = self._context or self._load()
        argument = json.dumps({"bytes": list(payload), "fPort": fport, "recvTime": recv_time})
        call = f"JSON.stringify(decodeUplink({argument}))"
        try:
            text = context.eval(call)
        except quickjs.JSException as exc:
            self._context = None  # a timeout or OOM can leave the engine unusable
            raise ProtocolError(f"JavaScript codec failed: {_first_line(exc)}") from None
        if not isinstance(text, str):
            raise ProtocolError("JavaScript codec returned nothing")
        result = json.loads(text)
        if not isinstance(result, dict):
            raise ProtocolError("JavaScript codec did not return an object")
        return result

    def decode(self, fport: int | None, payload: bytes) -> list[Measurement]:
        """Numeric leaves of `data` as measurements; `errors` become a ProtocolError."""
        result = self.decode_object(fport, payload)
        errors = result.get("errors")
        if errors:
            raise ProtocolError(f"JavaScript codec: {'; '.join(map(str, errors))}")
        data = result.get("data")
        if not isinstance(data, dict):
            raise ProtocolError("JavaScript codec returned no data object")
        out: list[Measurement] = []
        _flatten(data, "", out)
        return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or ["?"])[0]


def _flatten(obj: dict[str, Any], prefix: str, out: list[Measurement]) -> None:
    """Numbers become measurements named by their path; `{value, unit}` objects keep their unit."""
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if "value" in value and _is_number(value["value"]):
                out.append(Measurement(name, float(value["value"]), str(value.get("unit") or "")))
            else:
                _flatten(value, f"{name}_", out)
        elif _is_number(value):
            out.append(Measurement(name, float(value), ""))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
