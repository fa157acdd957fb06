"""A Vaisala WXT5xx weather transmitter on a pty: automatic or polled composite messages, CRC variant.

Run `python -m hil.sims.wxt --link /tmp/ttyWXT --rate 1 [--crc] [--polled]`; the agent opens /tmp/ttyWXT.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Sequence

from drivers.serial.wxt import crc_chars
from hil.sims.simulation import Frame, run_simulator, simulator_arguments


class WxtDevice:
    """Composite data messages `0R0,...` with 16 parameters; every Nth one reports Sm invalid (#)."""

    garbage_alphabet = bytes(b for b in range(256) if b not in b",\r\n")
    garbage_end = b""

    def __init__(self, seed: int, *, address: str, crc: bool, polled: bool, invalid_every: int) -> None:
        self.rng = random.Random(seed)
        self.address = address
        self.crc = crc
        self.polled = polled
        self.invalid_every = invalid_every
        self.n = 0
        self._received = b""

    def _message(self, crc: bool) -> Frame:
        self.n += 1
        wave = math.sin(self.n / 60)
        direction = (250 + 30 * wave + self.rng.gauss(0, 8)) % 360
        speed = max(0.0, 4.5 + 2 * wave + self.rng.gauss(0, 0.5))
        invalid = self.invalid_every > 0 and self.n % self.invalid_every == 0
        fields = [
            f"Dn={(direction - 20) % 360:03.0f}D", f"Dm={direction:03.0f}D", f"Dx={(direction + 20) % 360:03.0f}D",
            f"Sn={speed * 0.6:.1f}M", f"Sm={speed:.1f}{'#' if invalid else 'M'}", f"Sx={speed * 1.5:.1f}M",
            f"Ta={8.5 + 3 * wave:.1f}C", f"Ua={80 - 8 * wave:.1f}P", f"Pa={1013.2 + 2 * wave:.1f}H",
            f"Rc={self.n * 0.01:.2f}M", "Rd=0s", "Ri=0.0M", f"Th={9.0 + 3 * wave:.1f}C", "Vh=0.0N",
            "Vs=12.1V", "Vr=3.510V",
        ]  # fmt: skip
        head = f"{self.address}{'r' if crc else 'R'}0"
        body = ",".join([head, *fields]).encode("ascii")
        if crc:
            body += crc_chars(body)
        return Frame(body + b"\r\n", len(fields))

    def frame(self) -> Frame | None:
        """One automatic message per tick unless polled."""
        return None if self.polled else self._message(self.crc)

    def corrupt(self, data: bytes) -> bytes:
        """A wrong CRC character (CRC variant), else a temperature that is no number (malformed)."""
        if data[1:2] == b"r":
            line = data.rstrip(b"\r\n")
            return line[:-1] + bytes([0x40 | ((line[-1] + 1) & 0x3F)]) + b"\r\n"
        return data.replace(b"Ta=", b"Ta=X")

    def answer(self, command: bytes) -> list[Frame]:
        """Answer `<addr>R0` / `<addr>r0` polls (CRC when lower case)."""
        self._received += command
        out = []
        *lines, self._received = self._received.split(b"\n")
        for line in lines:
            poll = line.strip()
            if poll in (f"{self.address}R0".encode(), f"{self.address}r0".encode()):
                out.append(self._message(crc=poll[1:2] == b"r"))
        return out


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the transmitter until SIGTERM/SIGINT."""
    parser = simulator_arguments("A Vaisala WXT5xx weather transmitter on a pty.")
    parser.add_argument("--address", default="0", help="device address (default 0)")
    parser.add_argument("--crc", action="store_true", help="automatic messages with CRC (0r0 ...)")
    parser.add_argument("--polled", action="store_true", help="send only when polled with 0R0 / 0r0")
    parser.add_argument(
        "--invalid-every", type=int, default=0, metavar="N", help="Sm=...# in every Nth message"
    )
    args = parser.parse_args(argv)
    device = WxtDevice(
        args.seed, address=args.address, crc=args.crc, polled=args.polled, invalid_every=args.invalid_every
    )
    return run_simulator(args, device)


if __name__ == "__main__":
    sys.exit(main())
