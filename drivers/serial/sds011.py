"""Nova Fitness SDS011 particulate sensor, sans-I/O: 10-byte frames `AA C0 ... AB` and commands.

Layout from the public "Laser Dust Sensor Control Protocol V1.3" (Nova Fitness, 2015):
device -> host: `AA C0 pm25_lo pm25_hi pm10_lo pm10_hi id_lo id_hi sum AB` (values in 0.1 ug/m3,
sum = low byte of the sum of bytes 2..7), or a command reply `AA C5 cmd d1 d2 d3 id_lo id_hi sum AB`;
host -> device: 19 bytes `AA B4 cmd d1..d12 id_lo id_hi sum AB` (sum of bytes 2..16), where
device id FFFF addresses every sensor on the line.
"""

from __future__ import annotations

from drivers.serial.codec import ChecksumMismatch, Codec, Measurement, Reply, Sample

HEAD, TAIL = 0xAA, 0xAB
DATA, REPLY, COMMAND = 0xC0, 0xC5, 0xB4
FRAME_LEN, COMMAND_LEN = 10, 19
ANY_DEVICE = 0xFFFF

#: command ids (byte 2 of a command and of its reply)
REPORTING_MODE, QUERY_DATA, SET_ID, SLEEP_WORK, FIRMWARE, WORKING_PERIOD = 2, 4, 5, 6, 7, 8


def _sum(data: bytes | bytearray) -> int:
    return sum(data) & 0xFF


def command(cmd: int, payload: bytes = b"", device_id: int = ANY_DEVICE) -> bytes:
    """A 19-byte host command: id, up to 12 data bytes, target device id."""
    body = bytes([cmd]) + payload.ljust(12, b"\0") + device_id.to_bytes(2, "little")
    return bytes([HEAD, COMMAND]) + body + bytes([_sum(body), TAIL])


def set_query_mode(query: bool, device_id: int = ANY_DEVICE) -> bytes:
    """Switch between active reporting (a frame every second or period) and query mode."""
    return command(REPORTING_MODE, bytes([1, int(query)]), device_id)


def query_data(device_id: int = ANY_DEVICE) -> bytes:
    """Ask for one data frame (query mode)."""
    return command(QUERY_DATA, b"", device_id)


def set_sleep(sleeping: bool, device_id: int = ANY_DEVICE) -> bytes:
    """Sleep (fan and laser off: they wear out) or work."""
    return command(SLEEP_WORK, bytes([1, int(not sleeping)]), device_id)


def set_working_period(minutes: int, device_id: int = ANY_DEVICE) -> bytes:
    """0 = continuous; 1..30 = one measurement every n minutes (the sensor's own duty cycle)."""
    if not 0 <= minutes <= 30:
        raise ValueError("working period is 0..30 minutes")
    return command(WORKING_PERIOD, bytes([1, minutes]), device_id)


def data_frame(pm2_5: float, pm10: float, device_id: int = 0x1234) -> bytes:
    """A device data frame (for simulators and tests)."""
    body = (
        round(pm2_5 * 10).to_bytes(2, "little")
        + round(pm10 * 10).to_bytes(2, "little")
        + device_id.to_bytes(2, "little")
    )
    return bytes([HEAD, DATA]) + body + bytes([_sum(body), TAIL])


def reply_frame(cmd: int, d1: int, d2: int, device_id: int = 0x1234) -> bytes:
    """A device's reply to a set/query command (for simulators and tests)."""
    body = bytes([cmd, d1, d2, 0]) + device_id.to_bytes(2, "little")
    return bytes([HEAD, REPLY]) + body + bytes([_sum(body), TAIL])


def parse_command(frame: bytes) -> tuple[int, bytes, int] | None:
    """(command id, 12 data bytes, device id) of a valid 19-byte host command, else None."""
    if len(frame) != COMMAND_LEN or frame[0] != HEAD or frame[1] != COMMAND or frame[-1] != TAIL:
        return None
    if _sum(frame[2:17]) != frame[17]:
        return None
    return frame[2], bytes(frame[3:15]), int.from_bytes(frame[15:17], "little")


_REPLIES = {REPORTING_MODE: "reporting_mode", SLEEP_WORK: "sleep_work", WORKING_PERIOD: "working_period"}


class Sds011Codec(Codec):
    """Decode SDS011 data frames into pm2_5/pm10 samples and command replies into `Reply` events."""

    def _parse(self) -> None:
        buffer = self._buffer
        pos = 0
        size = len(buffer)
        while True:
            start = buffer.find(HEAD, pos)
            if start < 0:
                self._counters.garbage_bytes += size - pos
                pos = size
                break
            self._counters.garbage_bytes += start - pos
            pos = start
            if size - pos < FRAME_LEN:
                break
            kind = buffer[pos + 1]
            if buffer[pos + 9] != TAIL or kind not in (DATA, REPLY):
                self._counters.garbage_bytes += 1
                pos += 1
                continue
            # After a checksum failure move on by one byte only: the "frame" may have been a
            # false header in garbage overlapping the real frame that follows.
            pos += FRAME_LEN if self._frame(buffer[pos : pos + FRAME_LEN]) else 1
        del buffer[:pos]

    def _frame(self, frame: bytearray) -> bool:
        if _sum(frame[2:8]) != frame[8]:
            self._emit_error(ChecksumMismatch(f"SDS011 checksum: {bytes(frame).hex(' ')}"))
            return False
        self._counters.frames += 1
        if frame[1] == DATA:
            pm2_5 = (frame[2] | frame[3] << 8) / 10
            pm10 = (frame[4] | frame[5] << 8) / 10
            self._events.append(
                Sample(
                    "SDS011",
                    (Measurement("pm2_5", pm2_5, "ug/m3"), Measurement("pm10", pm10, "ug/m3")),
                )
            )
            return True
        name = _REPLIES.get(frame[2], f"command_{frame[2]}")
        self._events.append(Reply(name, bytes(frame[3:6]).hex()))
        return True
