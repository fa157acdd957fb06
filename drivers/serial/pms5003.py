"""Plantower PMS5003 / PMS7003 particulate sensors, sans-I/O: 32-byte frames `42 4D` and commands.

Layout from the public Plantower PMS5003/PMS7003 data manuals: `42 4D len_hi len_lo` then
len-2 payload bytes and a 16-bit big-endian checksum = sum of every byte before it. A data frame
has len 28: 13 big-endian words (PM1.0/2.5/10 at CF=1, PM1.0/2.5/10 under atmospheric
environment, six particle counts, reserved). Commands are `42 4D cmd data_hi data_lo sum_hi sum_lo`;
the device acknowledges mode and sleep commands with a len-4 frame `42 4D 00 04 cmd data sum`.
"""

from __future__ import annotations

import struct

from drivers.serial.codec import (
    ChecksumMismatch,
    Codec,
    MalformedFrame,
    Measurement,
    Reply,
    Sample,
)

HEAD = b"BM"
DATA_LEN = 28
FRAME_LEN = 4 + DATA_LEN
#: the longest frame length field a real device sends; anything longer is a false header
MAX_LEN = 64

#: command bytes
READ_PASSIVE, CHANGE_MODE, SLEEP_WAKE = 0xE2, 0xE1, 0xE4

_WORDS = struct.Struct(">13H")


def _checksum(data: bytes | bytearray) -> int:
    return sum(data) & 0xFFFF


def command(cmd: int, data: int = 0) -> bytes:
    """A 7-byte host command."""
    body = HEAD + bytes([cmd]) + data.to_bytes(2, "big")
    return body + _checksum(body).to_bytes(2, "big")


def set_passive_mode(passive: bool) -> bytes:
    """Passive: the sensor answers `read_passive()` only; active: it streams frames (default)."""
    return command(CHANGE_MODE, 0 if passive else 1)


def read_passive() -> bytes:
    """Ask for one data frame in passive mode."""
    return command(READ_PASSIVE)


def set_sleep(sleeping: bool) -> bytes:
    """Sleep (fan off: it wears out) or wake up (data is stable ~30 s after waking)."""
    return command(SLEEP_WAKE, 0 if sleeping else 1)


def frame(payload: bytes) -> bytes:
    """Frame a payload with header, length and checksum (for simulators and tests)."""
    body = HEAD + (len(payload) + 2).to_bytes(2, "big") + payload
    return body + _checksum(body).to_bytes(2, "big")


def data_frame(pm1: int, pm2_5: int, pm10: int, counts: tuple[int, ...] = (0,) * 6) -> bytes:
    """A device data frame with the same values at CF=1 and atmospheric (for simulators and tests)."""
    return frame(_WORDS.pack(pm1, pm2_5, pm10, pm1, pm2_5, pm10, *counts, 0))


def parse_command(data: bytes) -> tuple[int, int] | None:
    """(command, data word) of a valid 7-byte host command, else None."""
    if len(data) != 7 or data[:2] != HEAD or _checksum(data[:5]) != int.from_bytes(data[5:], "big"):
        return None
    return data[2], int.from_bytes(data[3:5], "big")


_REPLIES = {CHANGE_MODE: "mode", SLEEP_WAKE: "sleep_wake", READ_PASSIVE: "read"}


class Pms5003Codec(Codec):
    """Decode PMS5003/7003 frames into pm1/pm2_5/pm10 (atmospheric, ug/m3) samples and replies."""

    def _parse(self) -> None:
        buffer = self._buffer
        pos = 0
        while True:
            start = buffer.find(HEAD, pos)
            if start < 0:
                # keep a trailing 'B' that may be the first half of the next header
                end = len(buffer) - 1 if buffer.endswith(b"B") else len(buffer)
                self._counters.garbage_bytes += max(0, end - pos)
                pos = max(pos, end)
                break
            self._counters.garbage_bytes += start - pos
            pos = start
            if len(buffer) - pos < 4:
                break
            length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
            if not 2 < length <= MAX_LEN:
                self._counters.garbage_bytes += 1
                pos += 1
                continue
            if len(buffer) - pos < 4 + length:
                break
            # After a checksum failure move on by one byte only (see Sds011Codec).
            pos += 4 + length if self._frame(buffer[pos : pos + 4 + length]) else 1
        del buffer[:pos]

    def _frame(self, data: bytearray) -> bool:
        if _checksum(data[:-2]) != int.from_bytes(data[-2:], "big"):
            self._emit_error(ChecksumMismatch(f"PMS checksum: {bytes(data[:8]).hex(' ')}..."))
            return False
        payload = data[4:-2]
        if len(payload) == DATA_LEN - 2:
            words = _WORDS.unpack(payload)
            self._counters.frames += 1
            self._events.append(
                Sample(
                    "PMS",
                    (
                        Measurement("pm1", float(words[3]), "ug/m3"),
                        Measurement("pm2_5", float(words[4]), "ug/m3"),
                        Measurement("pm10", float(words[5]), "ug/m3"),
                    ),
                )
            )
        elif len(payload) == 2:
            self._counters.frames += 1
            self._events.append(Reply(_REPLIES.get(payload[0], f"command_{payload[0]}"), f"{payload[1]}"))
        else:
            self._emit_error(MalformedFrame(f"PMS frame with {len(payload)} payload bytes"))
        return True
