"""The agent's status as Prometheus text exposition (node_exporter's textfile collector reads it).

City IT runs hundreds of gateways with node_exporter already on them: `gateway metrics` writes the
counters of `gateway status` into its textfile directory, so no extra port is opened on the post.
Every number in the status becomes one sample: `gateway_<part>_<field>`, with the sensor, driver or
task it belongs to as a label; booleans are 0/1 and text is left out (except the uplink state,
which becomes `gateway_uplink_up`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

#: parts of the status keyed by a name: the name becomes this label
_NAMED = {
    "produced": "sensor",
    "out_of_range": "sensor",
    "drivers": "driver",
    "sensors": "sensor",
    "lora": "sensor",
}
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def render(status: Mapping[str, Any]) -> str:
    """Prometheus text format (version 0.0.4) of one status answer of the control socket."""
    gateway = str(status.get("gateway_id", ""))
    lines = [
        "# HELP gateway_info The gateway this agent runs on.",
        "# TYPE gateway_info gauge",
        f'gateway_info{{gateway_id="{_escape(gateway)}"}} 1',
    ]
    samples = sorted(_samples(status), key=lambda s: s[0])
    for name, labels, value in samples:
        shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        lines.append(f"{name}{{{shown}}} {_number(value)}" if shown else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


Sample = tuple[str, tuple[tuple[str, str], ...], float]


def _samples(status: Mapping[str, Any]) -> Iterator[Sample]:
    for part, value in status.items():
        if part == "gateway_id":
            continue
        if part in _NAMED and isinstance(value, Mapping):
            label = _NAMED[part]
            for name, inner in value.items():
                if part == "sensors" and isinstance(inner, Mapping):
                    # per-quantity last values would make one metric name per quantity: left to `status`
                    yield from _walk(
                        f"gateway_{part}",
                        {k: v for k, v in inner.items() if k != "last"},
                        ((label, str(name)),),
                    )
                    continue
                yield from _walk(f"gateway_{part}", inner, ((label, str(name)),))
        elif part == "tasks" and isinstance(value, list):
            for task in value:
                if isinstance(task, Mapping):
                    labels = (("task", str(task.get("name", ""))),)
                    yield from _walk("gateway_task", {k: v for k, v in task.items() if k != "name"}, labels)
        elif part == "uplink" and isinstance(value, Mapping):
            yield ("gateway_uplink_up", (), 1.0 if value.get("state") in ("connected", "idle") else 0.0)
            yield from _walk("gateway_uplink", value, ())
        else:
            yield from _walk(f"gateway_{part}", value, ())


def _walk(name: str, value: Any, labels: tuple[tuple[str, str], ...]) -> Iterator[Sample]:
    name = _INVALID.sub("_", name)
    if isinstance(value, bool):
        yield (name, labels, 1.0 if value else 0.0)
    elif isinstance(value, int | float):
        yield (name, labels, float(value))
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _walk(f"{name}_{key}", inner, labels)


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def unreachable(reason: str) -> str:
    """The metrics file when the agent cannot be read: down, and why (`config` or `agent`)."""
    return (
        "# HELP gateway_agent_up Whether the agent answered on its control socket.\n"
        "# TYPE gateway_agent_up gauge\n"
        "gateway_agent_up 0\n"
        "# HELP gateway_metrics_error Why the agent could not be read (config: its file; agent: its socket).\n"
        "# TYPE gateway_metrics_error gauge\n"
        f'gateway_metrics_error{{reason="{_escape(reason)}"}} 1\n'
    )


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
