"""The generic ASCII line sensor, sans-I/O: a regex with named groups, each mapped to a quantity.

For the many sensors that print lines like `T=21.53;H=45.2` and have no protocol worth a codec.
value = float(group) * scale + offset. Lines the regex does not match are counted as ignored
(devices print banners and menus); a matched group that is not a number is a MalformedFrame.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.serial.codec import LineCodec, MalformedFrame, Measurement, Sample, finite


@dataclass(frozen=True, slots=True)
class LineField:
    """What one named group of the regex measures."""

    quantity: str
    unit: str
    scale: float = 1.0
    offset: float = 0.0


class LineParserCodec(LineCodec):
    """Decode lines with a configured regex; `fields` maps group names to LineField."""

    def __init__(
        self, pattern: str | re.Pattern[str], fields: Mapping[str, LineField], max_line: int = 512
    ) -> None:
        super().__init__()
        self._pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        missing = set(fields) - set(self._pattern.groupindex)
        if missing:
            raise ValueError(f"fields {sorted(missing)} are not named groups of the pattern")
        self._fields = dict(fields)
        self.max_line = max_line

    def _decode_line(self, line: bytes) -> None:
        match = self._pattern.search(line.decode("latin-1"))
        if match is None:
            self._counters.ignored += 1
            return
        out = []
        for name, field in self._fields.items():
            text = match.group(name)
            if text is None:
                continue
            try:
                raw = finite(text)
            except ValueError:
                self._emit_error(MalformedFrame(f"group {name!r} is not a number: {text[:40]!r}"))
                return
            value = raw if field.scale == 1.0 and not field.offset else raw * field.scale + field.offset
            out.append(Measurement(field.quantity, finite(f"{value:.12g}"), field.unit))
        self._counters.frames += 1
        self._events.append(Sample("line", tuple(out)))
