"""A Nova Fitness SDS011 particulate sensor on a pty: active or query mode, sleep/work commands.

Run `python -m hil.sims.sds011 --link /tmp/ttySDS --rate 1`; the agent opens /tmp/ttySDS.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Sequence

from drivers.serial import sds011
from hil.sims.simulation import Frame, run_simulator, simulator_arguments


class Sds011Device:
    """The device's state machine: reporting mode, sleeping, and a slowly varying dust load."""

    garbage_alphabet = bytes(b for b in range(256) if b != sds011.HEAD)
    garbage_end = b""

    def __init__(self, seed: int, query_mode: bool = False) -> None:
        self.rng = random.Random(seed)
        self.query_mode = query_mode
        self.sleeping = False
        self.n = 0
        self._received = bytearray()

    def _data(self) -> Frame:
        self.n += 1
        pm10 = max(0.0, 18 + 8 * math.sin(self.n / 50) + self.rng.gauss(0, 1.5))
        pm2_5 = pm10 * 0.6
        return Frame(sds011.data_frame(pm2_5, pm10), 2)

    def corrupt(self, data: bytes) -> bytes:
        """The frame with its checksum off by one."""
        return data[:8] + bytes([(data[8] + 1) & 0xFF]) + data[9:]

    def frame(self) -> Frame | None:
        """A data frame every tick in active mode while awake."""
        if self.query_mode or self.sleeping:
            return None
        return self._data()

    def answer(self, command: bytes) -> list[Frame]:
        """Replies to complete host commands (they may arrive split across reads)."""
        self._received += command
        out: list[Frame] = []
        while (start := self._received.find(bytes([sds011.HEAD, sds011.COMMAND]))) >= 0:
            raw = bytes(self._received[start : start + sds011.COMMAND_LEN])
            if len(raw) < sds011.COMMAND_LEN:
                del self._received[:start]
                return out
            parsed = sds011.parse_command(raw)
            if parsed is None:
                del self._received[: start + 1]
                continue
            del self._received[: start + sds011.COMMAND_LEN]
            out += self._execute(parsed[0], parsed[1])
        # keep a trailing head byte: it may start the next command
        keep = self._received.endswith(bytes([sds011.HEAD]))
        self._received = bytearray([sds011.HEAD]) if keep else bytearray()
        return out

    def _execute(self, cmd: int, data: bytes) -> list[Frame]:
        if cmd == sds011.SLEEP_WORK:
            if data[0] == 1:
                self.sleeping = data[1] == 0
            return [Frame(sds011.reply_frame(cmd, data[0], int(not self.sleeping)), 0)]
        if self.sleeping:
            return []  # a sleeping SDS011 only listens for "work"
        if cmd == sds011.QUERY_DATA:
            return [self._data()]
        if cmd == sds011.REPORTING_MODE:
            if data[0] == 1:
                self.query_mode = data[1] == 1
            return [Frame(sds011.reply_frame(cmd, data[0], int(self.query_mode)), 0)]
        return [Frame(sds011.reply_frame(cmd, data[0], data[1]), 0)]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the sensor until SIGTERM/SIGINT."""
    parser = simulator_arguments("A Nova Fitness SDS011 particulate sensor on a pty.")
    parser.add_argument("--query-mode", action="store_true", help="start in query mode (default: active)")
    args = parser.parse_args(argv)
    return run_simulator(args, Sds011Device(args.seed, args.query_mode))


if __name__ == "__main__":
    sys.exit(main())
