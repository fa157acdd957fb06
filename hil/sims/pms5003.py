"""A Plantower PMS5003/PMS7003 particulate sensor on a pty: active or passive mode, sleep/wake.

Run `python -m hil.sims.pms5003 --link /tmp/ttyPMS --rate 1`; the agent opens /tmp/ttyPMS.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Sequence

from drivers.serial import pms5003
from hil.sims.simulation import Frame, run_simulator, simulator_arguments


class Pms5003Device:
    """The device's state machine: active/passive, sleeping, and a slowly varying dust load."""

    garbage_alphabet = bytes(b for b in range(256) if b != pms5003.HEAD[0])
    garbage_end = b""

    def __init__(self, seed: int, passive: bool = False) -> None:
        self.rng = random.Random(seed)
        self.passive = passive
        self.sleeping = False
        self.n = 0
        self._received = bytearray()

    def _data(self) -> Frame:
        self.n += 1
        pm10 = max(0, round(20 + 9 * math.sin(self.n / 40) + self.rng.gauss(0, 2)))
        data = pms5003.data_frame(pm10 // 3, pm10 * 2 // 3, pm10, counts=(900, 270, 60, 9, 3, 1))
        return Frame(data, 3)

    def corrupt(self, data: bytes) -> bytes:
        """The frame with its checksum off by one."""
        return data[:-1] + bytes([(data[-1] + 1) & 0xFF])

    def frame(self) -> Frame | None:
        """A data frame every tick in active mode while awake."""
        if self.passive or self.sleeping:
            return None
        return self._data()

    def answer(self, command: bytes) -> list[Frame]:
        """Replies to complete 7-byte host commands (they may arrive split across reads)."""
        self._received += command
        out: list[Frame] = []
        while (start := self._received.find(pms5003.HEAD)) >= 0:
            raw = bytes(self._received[start : start + 7])
            if len(raw) < 7:
                del self._received[:start]
                return out
            parsed = pms5003.parse_command(raw)
            if parsed is None:
                del self._received[: start + 1]
                continue
            del self._received[: start + 7]
            out += self._execute(*parsed)
        # keep a trailing "B": it may start the next command
        self._received = bytearray(b"B") if self._received.endswith(b"B") else bytearray()
        return out

    def _execute(self, cmd: int, data: int) -> list[Frame]:
        if cmd == pms5003.SLEEP_WAKE:
            self.sleeping = data == 0
            return [Frame(pms5003.frame(bytes([cmd, data])), 0)]
        if self.sleeping:
            return []
        if cmd == pms5003.CHANGE_MODE:
            self.passive = data == 0
            return [Frame(pms5003.frame(bytes([cmd, data])), 0)]
        if cmd == pms5003.READ_PASSIVE and self.passive:
            return [self._data()]
        return []


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the sensor until SIGTERM/SIGINT."""
    parser = simulator_arguments("A Plantower PMS5003/PMS7003 particulate sensor on a pty.")
    parser.add_argument("--passive", action="store_true", help="start in passive mode (default: active)")
    args = parser.parse_args(argv)
    return run_simulator(args, Pms5003Device(args.seed, args.passive))


if __name__ == "__main__":
    sys.exit(main())
