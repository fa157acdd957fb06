"""An NMEA 0183 weather station on a pty: $WIMDA, $WIXDR, $WIMWV, $YXMTW sentences at a set rate.

Run `python -m hil.sims.nmea_station --link /tmp/ttyWX --rate 2`; the agent opens /tmp/ttyWX.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Sequence

from drivers.serial.nmea import sentence
from hil.sims.simulation import Frame, run_simulator, simulator_arguments

#: sentence types the station can send, cycled in the order given
KINDS = ("mda", "xdr", "mwv", "mtw")


class WeatherStation:
    """Plausible Rostock weather, slowly varying, one sentence per frame."""

    garbage_alphabet = bytes(b for b in range(256) if b not in b"$!\r\n")
    garbage_end = b""

    def __init__(self, kinds: Sequence[str], seed: int) -> None:
        self.kinds = list(kinds)
        self.rng = random.Random(seed)
        self.n = 0

    def frame(self) -> Frame:
        """The next sentence of the cycle."""
        kind = self.kinds[self.n % len(self.kinds)]
        self.n += 1
        body, readings = getattr(self, f"_{kind}")()
        return Frame(sentence(body), readings)

    def corrupt(self, data: bytes) -> bytes:
        """The sentence with its checksum off by one."""
        star = data.rindex(b"*")
        wrong = (int(data[star + 1 : star + 3], 16) + 1) % 256
        return data[: star + 1] + f"{wrong:02X}".encode() + b"\r\n"

    def answer(self, command: bytes) -> list[Frame]:
        """An NMEA talker ignores what it is sent."""
        return []

    def _wave(self, mean: float, amplitude: float, period: float, noise: float) -> float:
        return mean + amplitude * math.sin(2 * math.pi * self.n / period) + self.rng.gauss(0, noise)

    def _mda(self) -> tuple[str, int]:
        bar = self._wave(1.0132, 0.004, 500, 0.0002)
        air = self._wave(9.5, 4.0, 300, 0.1)
        rh = min(100.0, max(0.0, self._wave(78, 10, 400, 0.5)))
        dew = air - (100 - rh) / 5
        direction = self._wave(240, 40, 200, 5) % 360
        speed = max(0.0, self._wave(5.5, 2.0, 100, 0.4))
        body = (
            f"WIMDA,{bar * 29.5300:.2f},I,{bar:.4f},B,{air:.1f},C,,,{rh:.1f},,{dew:.1f},C,"
            f"{direction:.1f},T,,,{speed * 3600 / 1852:.1f},N,{speed:.1f},M"
        )
        return body, 6

    def _xdr(self) -> tuple[str, int]:
        air = self._wave(9.5, 4.0, 300, 0.1)
        rh = min(100.0, max(0.0, self._wave(78, 10, 400, 0.5)))
        bar = self._wave(1.0132, 0.004, 500, 0.0002)
        return f"WIXDR,C,{air:.1f},C,0,H,{rh:.1f},P,0,P,{bar:.4f},B,0", 3

    def _mwv(self) -> tuple[str, int]:
        direction = self._wave(240, 40, 200, 5) % 360
        speed = max(0.0, self._wave(5.5, 2.0, 100, 0.4))
        return f"WIMWV,{direction:.1f},R,{speed:.1f},M,A", 2

    def _mtw(self) -> tuple[str, int]:
        return f"YXMTW,{self._wave(11.0, 1.5, 900, 0.05):.1f},C", 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the station until SIGTERM/SIGINT."""
    parser = simulator_arguments(__doc__.splitlines()[0] if __doc__ else "NMEA station")
    parser.add_argument(
        "--sentences",
        default="mda,xdr",
        help=f"comma-separated cycle of sentence types out of {','.join(KINDS)} (default mda,xdr)",
    )
    args = parser.parse_args(argv)
    kinds = [k.strip().lower() for k in args.sentences.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        parser.error(f"--sentences: unknown types {unknown}; choose from {KINDS}")
    return run_simulator(args, WeatherStation(kinds, args.seed))


if __name__ == "__main__":
    sys.exit(main())
