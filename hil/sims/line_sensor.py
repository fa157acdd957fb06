"""A generic ASCII line sensor on a pty, for the regex line parser: `T=21.53;H=45.2;P=1013.25`.

Run `python -m hil.sims.line_sensor --link /tmp/ttyLINE --rate 1`. The matching sensor config:

    [sensors.serial.regex]
    pattern = '^T=(?P<t>-?\\d+\\.\\d+);H=(?P<h>\\d+\\.\\d+);P=(?P<p>\\d+\\.\\d+)$'
    fields.t = { quantity = "air_temperature", unit = "Cel" }
    fields.h = { quantity = "relative_humidity", unit = "%RH" }
    fields.p = { quantity = "barometric_pressure", unit = "Pa", scale = 100.0 }
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Sequence

from hil.sims.simulation import Frame, run_simulator, simulator_arguments

#: a regex that reads this simulator's lines (see the module docstring for the whole config)
PATTERN = r"^T=(?P<t>-?\d+\.\d+);H=(?P<h>\d+\.\d+);P=(?P<p>\d+\.\d+)$"


class LineSensor:
    """Prints one `T=..;H=..;P=..` line per tick; a corrupt one reads `T=ERR` and matches no regex."""

    garbage_alphabet = bytes(b for b in range(32, 127) if b not in b"T")
    garbage_end = b"\r\n"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def frame(self) -> Frame | None:
        """The next line."""
        self.n += 1
        wave = math.sin(self.n / 30)
        text = f"T={7.5 + 2 * wave + self.rng.gauss(0, 0.05):.2f};H={82 - 6 * wave:.1f};P={1012.8 + wave:.2f}"
        return Frame(text.encode("ascii") + b"\r\n", 3)

    def answer(self, command: bytes) -> list[Frame]:
        """A line sensor ignores what it is sent."""
        return []

    def corrupt(self, data: bytes) -> bytes:
        """The sensor's error line instead of its values."""
        return b"T=ERR;H=ERR;P=ERR\r\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the sensor until SIGTERM/SIGINT."""
    parser = simulator_arguments("A generic ASCII line sensor on a pty (T=..;H=..;P=..).")
    args = parser.parse_args(argv)
    return run_simulator(args, LineSensor(args.seed))


if __name__ == "__main__":
    sys.exit(main())
