"""A RAK3172 (RUI3) or RN2483 modem in LoRa P2P mode, as far as the agent's driver uses it.

Sans-I/O: `answer(command_line)` returns what the modem prints back; `packet(...)` the lines it
prints when it receives something. Used with an in-memory line in unit tests and on a pty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hil.sims.pty_port import PtyPort


@dataclass
class ModemEmulator:
    """Answers set-up commands like the real modem; remembers what it was told."""

    kind: str  # "rak3172" or "rn2483"
    old_firmware: bool = False
    #: commands answered with an error (to test failures)
    refuse: frozenset[str] = frozenset()
    commands: list[str] = field(default_factory=list)
    receiving: bool = False
    #: RAK3172 work mode (AT+NWM): 1 LoRaWAN, as a new module ships, 0 P2P
    work_mode: int = 1
    #: RAK3172 restarts on a mode switch without answering it first
    silent_restart: bool = False
    restarts: int = 0

    def answer(self, line: str) -> bytes:
        """The modem's reply to one command line."""
        self.commands.append(line)
        if self.kind == "rak3172":
            return self._rak(line)
        return self._rn(line)

    def _rak(self, line: str) -> bytes:
        if line in self.refuse:
            return b"AT_PARAM_ERROR\r\n"
        if line == "AT+NWM=?":
            return f"AT+NWM={self.work_mode}\r\nOK\r\n".encode()
        if line.startswith("AT+NWM=") and int(line[7:]) != self.work_mode:
            self.work_mode, self.receiving = int(line[7:]), False
            self.restarts += 1  # RUI3 saves the mode and restarts, printing its banner
            banner = b"RAKwireless RAK3172-E Example\r\nCurrent Work Mode: LoRa P2P.\r\n"
            return banner if self.silent_restart else b"OK\r\n" + banner
        if line.startswith("AT+PRECV="):
            self.receiving = True
        return b"OK\r\n"

    def _rn(self, line: str) -> bytes:
        if line in self.refuse:
            return b"invalid_param\r\n"
        if line == "sys get ver":
            return b"RN2483 1.0.5 Oct 31 2018 15:06:52\r\n"
        if line == "mac pause":
            return b"4294967245\r\n"
        if line == "radio rx 0":
            self.receiving = True
        return b"ok\r\n"

    def packet(self, payload: bytes, rssi: int = -70, snr: int = 8) -> bytes:
        """What the modem prints when a packet arrives (RN2483 then leaves receive mode)."""
        if self.kind == "rn2483":
            self.receiving = False
            return b"radio_rx  " + payload.hex().upper().encode() + b"\r\n"
        if self.old_firmware:
            return f"+EVT:RXP2P, RSSI {rssi}, SNR {snr}\r\n+EVT:{payload.hex().upper()}\r\n".encode()
        return f"+EVT:RXP2P:{rssi}:{snr}:{payload.hex().upper()}\r\n".encode()


async def serve_on_pty(port: PtyPort, modem: ModemEmulator) -> None:
    """Answer the agent's commands on a pty until cancelled (the agent opens `port.link`)."""
    buffer = b""
    while True:
        buffer += await port.read()
        *lines, buffer = buffer.replace(b"\r", b"").split(b"\n")
        for line in lines:
            if line.strip():
                await port.write(modem.answer(line.decode("ascii", "replace").strip()))
