"""Sans-I/O line protocols of the RAK3172 (RUI3 firmware) and Microchip RN2483 in LoRa P2P mode.

Sources: RAKwireless "RUI3 AT command manual" (AT+NWM, AT+P2P, AT+PRECV, +EVT:RXP2P) and
Microchip "RN2483 LoRa Technology Module Command Reference User's Guide" (DS40001784;
mac pause, radio set ..., radio rx 0, `radio_rx  <hex>`, radio_err).
Both modems speak CR LF terminated ASCII lines. `feed(bytes)` returns events; garbage lines are
reported as `Noise`, never raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kernel.errors import ProtocolError

MAX_LINE = 1024


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to the last command: ok or an error text."""

    ok: bool
    text: str


@dataclass(frozen=True, slots=True)
class Info:
    """A line that belongs to a command's answer but is not its end (version, a value)."""

    text: str


@dataclass(frozen=True, slots=True)
class Packet:
    """A received P2P packet."""

    payload: bytes
    rssi: float | None = None
    snr: float | None = None


@dataclass(frozen=True, slots=True)
class RxEnded:
    """Reception stopped (RN2483 radio_err / timeout): the receiver must be restarted."""

    text: str


@dataclass(frozen=True, slots=True)
class Noise:
    """A line that fits nothing (line noise, a boot banner); counted, not fatal."""

    text: str


ModemEvent = Reply | Info | Packet | RxEnded | Noise


class LineSplitter:
    """CR/LF line framing with a length bound (an unterminated flood cannot grow memory)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[str]:
        """Complete lines in `data` (decoded leniently, stripped), empty lines dropped."""
        self._buffer += data
        *lines, rest = re.split(rb"\r\n|\n|\r", bytes(self._buffer))
        self._buffer = bytearray(rest[-MAX_LINE:])
        out = []
        for raw in lines:
            text = raw[:MAX_LINE].decode("ascii", "replace").strip()
            if text:
                out.append(text)
        return out


def _hex_payload(text: str) -> bytes:
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise ProtocolError(f"not a hex payload: {text[:40]!r}") from None


_RUI3_EVENT = re.compile(r"^\+EVT:RXP2P:(-?\d+):(-?\d+):([0-9A-Fa-f]*)$")
_RUI3_OLD_HEADER = re.compile(r"^\+EVT:RXP2P,\s*RSSI\s*(-?\d+),\s*SNR\s*(-?\d+)$")
_RUI3_OLD_DATA = re.compile(r"^\+EVT:([0-9A-Fa-f]+)$")


class Rak3172Protocol:
    """RAK3172 with RUI3: `+EVT:RXP2P:<rssi>:<snr>:<hex>` (older firmware: two lines).

    Switching the work mode (`AT+NWM=0`, P2P) makes RUI3 save it and restart, so the driver asks
    first (`AT+NWM=?`) and switches only a module that is not in P2P mode yet (a new one is in
    LoRaWAN mode), then waits for it to answer again before `setup_commands`.
    """

    MODE_QUERY = "AT+NWM=?"
    P2P_MODE = "AT+NWM=0"

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._pending_signal: tuple[float, float] | None = None

    @staticmethod
    def setup_commands(freq_hz: int, sf: int, bw_khz: int, cr: str, preamble: int, power: int) -> list[str]:
        """Radio parameters and continuous receive, in P2P mode (RUI3: CR index 0..3 = 4/5..4/8).

        65534 = listen without a timeout and without going back to TX mode (RUI3 AT+PRECV).
        """
        cr_index = int(cr.split("/")[1]) - 5
        return [
            f"AT+P2P={freq_hz}:{sf}:{bw_khz}:{cr_index}:{preamble}:{power}",
            "AT+PRECV=65534",
        ]

    @staticmethod
    def in_p2p_mode(answer: list[str]) -> bool:
        """Whether the lines answering MODE_QUERY say P2P (`0`, or `AT+NWM=0` on some firmware)."""
        values = [line.removeprefix("AT+NWM=").strip() for line in answer]
        return "0" in values

    @staticmethod
    def encode(command: str) -> bytes:
        """A command line as sent on the wire."""
        return command.encode("ascii") + b"\r\n"

    def feed(self, data: bytes) -> list[ModemEvent]:
        """Events in the bytes received."""
        return [self._line(line) for line in self._lines.feed(data)]

    def _line(self, line: str) -> ModemEvent:
        if line == "OK":
            return Reply(True, line)
        if line.startswith("AT_") and line.endswith("ERROR"):
            return Reply(False, line)
        if match := _RUI3_EVENT.match(line):
            return self._packet(match.group(3), float(match.group(1)), float(match.group(2)))
        if match := _RUI3_OLD_HEADER.match(line):
            self._pending_signal = (float(match.group(1)), float(match.group(2)))
            return Info(line)
        if self._pending_signal is not None and (match := _RUI3_OLD_DATA.match(line)):
            rssi, snr = self._pending_signal
            self._pending_signal = None
            return self._packet(match.group(1), rssi, snr)
        if line.startswith("+EVT:"):
            return Info(line)
        if line.startswith("AT"):
            return Info(line)  # command echo
        return Info(line) if line.isprintable() else Noise(line)

    @staticmethod
    def _packet(hex_text: str, rssi: float, snr: float) -> ModemEvent:
        try:
            return Packet(_hex_payload(hex_text), rssi, snr)
        except ProtocolError:
            return Noise(hex_text)


class Rn2483Protocol:
    """RN2483: one answer line per command; `radio rx 0` answers ok, then `radio_rx  <hex>`."""

    ERRORS = frozenset({"invalid_param", "busy", "err", "radio_err", "denied"})

    def __init__(self) -> None:
        self._lines = LineSplitter()

    @staticmethod
    def setup_commands(freq_hz: int, sf: int, bw_khz: int, cr: str, preamble: int, power: int) -> list[str]:
        """Pause LoRaWAN, set the radio up, disable the receive watchdog, start receiving."""
        return [
            "sys get ver",
            "mac pause",
            "radio set mod lora",
            f"radio set freq {freq_hz}",
            f"radio set sf sf{sf}",
            f"radio set bw {bw_khz}",
            f"radio set cr {cr}",
            f"radio set prlen {preamble}",
            f"radio set pwr {max(-3, min(power, 15))}",
            "radio set wdt 0",
            "radio rx 0",
        ]

    RECEIVE = "radio rx 0"

    @staticmethod
    def encode(command: str) -> bytes:
        """A command line as sent on the wire."""
        return command.encode("ascii") + b"\r\n"

    def feed(self, data: bytes) -> list[ModemEvent]:
        """Events in the bytes received."""
        return [self._line(line) for line in self._lines.feed(data)]

    def _line(self, line: str) -> ModemEvent:
        if line.startswith("radio_rx"):
            try:
                return Packet(_hex_payload(line[len("radio_rx") :]))
            except ProtocolError:
                return Noise(line)
        if line == "radio_err":
            return RxEnded(line)
        if line == "ok":
            return Reply(True, line)
        if line in self.ERRORS:
            return Reply(False, line)
        if line.isprintable():
            return Info(line)
        return Noise(line)
