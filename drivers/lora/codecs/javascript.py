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
from kernel.errors import ConfigError, ProtocolError

# imported by name: quickjs-ng ships no type information
quickjs: Any = importlib.import_module("quickjs")
MEMORY_LIMIT = 16 << 20
#: levels of nested `data` objects turned into measurements
MAX_DEPTH = 8

# Defined in each engine after the formatter: builds TTN's `input` (recvTime a Date) and
# serialises the answer, so one short eval per uplink does the whole call.
_CALLER_NAME = "__gatewayDecodeUplink"
_CALLER = f"""
function {_CALLER_NAME}(bytes, fPort, ms) {{
  var input = {{bytes: bytes, fPort: fPort, recvTime: ms === null ? new Date() : new Date(ms)}};
  return JSON.stringify(decodeUplink(input));
}}
"""


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
            context.eval(_CALLER)
        except quickjs.JSException as exc:
            raise ConfigError(f"{self._label}: JavaScript does not load: {_first_line(exc)}") from None
        if not defined:
            raise ConfigError(f"{self._label}: defines no decodeUplink(input) function")
        self._context = context
        return context

    def decode_object(
        self, fport: int | None, payload: bytes, recv_time_ms: int | None = None
    ) -> dict[str, Any]:
        """The formatter's raw `{data, warnings, errors}` answer.

        `input.recvTime` is a JavaScript Date, as The Things Stack and ChirpStack pass it:
        `recv_time_ms` (Unix milliseconds), or the engine's clock when None.
        """
        context = self._context
        if context is None:  # rebuilt after a failure: loading it again may fail too
            try:
                context = self._load()
            except ConfigError as exc:
                raise ProtocolError(str(exc)) from None
        when = "null" if recv_time_ms is None else str(int(recv_time_ms))
        call = f"{_CALLER_NAME}({json.dumps(list(payload))}, {json.dumps(fport)}, {when})"
        try:
            text = context.eval(call)
        except quickjs.JSException as exc:
            self._context = None  # a timeout or OOM can leave the engine unusable
            raise ProtocolError(f"JavaScript codec failed: {_first_line(exc)}") from None
        if not isinstance(text, str):
            raise ProtocolError("JavaScript codec returned nothing")
        try:
            result = json.loads(text)
        except (RecursionError, ValueError):
            raise ProtocolError("JavaScript codec returned unreadable JSON (nested too deeply?)") from None
        if not isinstance(result, dict):
            raise ProtocolError("JavaScript codec did not return an object")
        return result

    def decode(self, fport: int | None, payload: bytes) -> list[Measurement]:
        """Numeric leaves of `data` as measurements; `errors` become a ProtocolError."""
        result = self.decode_object(fport, payload)
        errors = result.get("errors")
        if errors:
            text = "; ".join(map(str, errors)) if isinstance(errors, list) else str(errors)
            raise ProtocolError(f"JavaScript codec: {text}")
        data = result.get("data")
        if not isinstance(data, dict):
            raise ProtocolError("JavaScript codec returned no data object")
        out: list[Measurement] = []
        _flatten(data, "", out, MAX_DEPTH)
        return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or ["?"])[0]


def _flatten(obj: dict[str, Any], prefix: str, out: list[Measurement], depth: int) -> None:
    """Numbers become measurements named by their path; `{value, unit}` objects keep their unit.

    Objects nested deeper than `depth` levels are skipped: no sensor reports like that.
    """
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if "value" in value and _is_number(value["value"]):
                out.append(Measurement(name, float(value["value"]), str(value.get("unit") or "")))
            elif depth > 1:
                _flatten(value, f"{name}_", out, depth - 1)
        elif _is_number(value):
            out.append(Measurement(name, float(value), ""))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
