"""Write a configuration dict back as TOML (tomllib only reads): used to derive configs, e.g. by the demo."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ("-" if value < 0 else "") + ("inf" if math.isinf(value) else "nan")
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum()
    return key if bare else json.dumps(key)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dumps(data: dict[str, Any], _prefix: str = "") -> str:
    """TOML text for `data`: scalars first, then tables, then arrays of tables."""
    lines = [
        f"{_key(k)} = {_value(v)}"
        for k, v in data.items()
        if not isinstance(v, dict) and not _is_table_array(v)
    ]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in data.items():
        name = f"{_prefix}{_key(key)}"
        if isinstance(value, dict):
            out += f"\n[{name}]\n" + dumps(value, name + ".")
        elif _is_table_array(value):
            for item in value:
                out += f"\n[[{name}]]\n" + dumps(item, name + ".")
    return out
