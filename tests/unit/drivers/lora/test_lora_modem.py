"""P2P modems: line protocols (fed whole, byte by byte, with noise) and the driver on a fake line."""

from __future__ import annotations

import asyncio

import pytest

from drivers.base import Sink
from drivers.lora.codecs import codec_for
from drivers.lora.config import ModemSection
from drivers.lora.modem.driver import ModemDriver
from drivers.lora.modem.protocol import Info, Noise, Packet, Rak3172Protocol, Reply, Rn2483Protocol, RxEnded
from hil.sims.lora_modem import ModemEmulator
from hil.sims.lora_payloads import em300_th
from kernel.errors import DeviceError


def feed_bytewise(protocol: Rak3172Protocol | Rn2483Protocol, data: bytes) -> list[object]:
    events: list[object] = []
    for i in range(len(data)):
        events += protocol.feed(data[i : i + 1])
    return events


def test_rui3_one_line_event_whole_and_byte_by_byte() -> None:
    line = b"+EVT:RXP2P:-44:6:0103A1\r\n"
    expected = [Packet(bytes.fromhex("0103a1"), -44.0, 6.0)]
    assert Rak3172Protocol().feed(line) == expected
    assert feed_bytewise(Rak3172Protocol(), line) == expected


def test_rui3_old_firmware_two_lines() -> None:
    events = Rak3172Protocol().feed(b"+EVT:RXP2P, RSSI -61, SNR 9\r\n+EVT:CAFE\r\n")
    assert events[-1] == Packet(b"\xca\xfe", -61.0, 9.0)


def test_rui3_replies_and_noise_around_a_packet() -> None:
    events = Rak3172Protocol().feed(
        b"\x00\xff\xfe\r\nOK\r\nAT_PARAM_ERROR\r\n+EVT:RXP2P:-1:2:ZZ\r\n+EVT:RXP2P:-3:-4:00\r\n"
    )
    assert events[1:3] == [Reply(True, "OK"), Reply(False, "AT_PARAM_ERROR")]
    assert isinstance(events[3], Noise | Info)
    assert events[4] == Packet(b"\x00", -3.0, -4.0)


def test_rn2483_lines() -> None:
    protocol = Rn2483Protocol()
    events = feed_bytewise(
        protocol, b"ok\r\nradio_rx  48656C6C6F\r\nradio_err\r\ninvalid_param\r\n4294967245\r\n"
    )
    assert events == [
        Reply(True, "ok"),
        Packet(b"Hello"),
        RxEnded("radio_err"),
        Reply(False, "invalid_param"),
        Info("4294967245"),
    ]


def test_rui3_setup_commands() -> None:
    commands = Rak3172Protocol.setup_commands(868_100_000, 9, 125, "4/6", 8, 14)
    assert commands == ["AT+P2P=868100000:9:125:1:8:14", "AT+PRECV=65534"]


@pytest.mark.parametrize(
    ("answer", "p2p"),
    [
        (["AT+NWM=0"], True),
        (["0"], True),
        (["AT+NWM=1"], False),
        (["AT+NWM=?", "AT+NWM=1"], False),  # with command echo on
        (["RAKwireless RAK3172-E Example", "Current Work Mode: LoRa P2P."], False),  # a boot banner
        ([], False),
    ],
)
def test_rui3_work_mode_answer(answer: list[str], p2p: bool) -> None:
    assert Rak3172Protocol.in_p2p_mode(answer) is p2p


class FakeLine:
    """An in-memory serial line with a modem emulator behind it."""

    def __init__(self, modem: ModemEmulator) -> None:
        self.port = "/dev/fake"
        self.modem = modem
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False

    async def read(self) -> bytes:
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        self.inbox.put_nowait(self.modem.answer(data.decode().strip()))

    async def close(self) -> None:
        self.closed = True


async def run_until(driver: ModemDriver, sink: Sink, condition: object) -> None:
    task = asyncio.create_task(driver.run(sink))
    try:
        async with asyncio.timeout(5):
            while not condition():  # type: ignore[operator]
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(("kind", "old"), [("rak3172", False), ("rak3172", True), ("rn2483", False)])
async def test_driver_sets_up_the_modem_and_decodes_packets(kind: str, old: bool, sink) -> None:
    modem = ModemEmulator(kind, old_firmware=old)
    line = FakeLine(modem)

    async def opener(section: ModemSection) -> FakeLine:
        return line

    section = ModemSection(modem=kind, port="/dev/fake", codec="em300_th", spreading_factor=9)  # type: ignore[arg-type]
    driver = ModemDriver("p2p-1", section, codec_for("em300_th"), opener)  # type: ignore[arg-type]

    async def feed_when_listening() -> None:
        while not modem.receiving:
            await asyncio.sleep(0.01)
        line.inbox.put_nowait(modem.packet(em300_th(12.5, 80.0), rssi=-77, snr=4))
        line.inbox.put_nowait(modem.packet(b"\x99\x99"))  # not an EM300 payload

    feeder = asyncio.create_task(feed_when_listening())
    await run_until(driver, sink, lambda: driver.statistics().packets >= 2)
    await feeder
    temps = [r.value for r in sink.readings if r.quantity == "temperature"]
    assert temps == [12.5]
    assert driver.statistics().decode_errors == 1
    if kind == "rn2483":
        assert "radio set sf sf9" in modem.commands
        assert modem.commands.count("radio rx 0") >= 2  # listening again after each packet
    else:
        assert next(r.value for r in sink.readings if r.quantity == "rssi") == -77.0


async def test_refused_command_is_a_device_error_and_the_port_is_reopened(sink) -> None:
    modem = ModemEmulator("rn2483", refuse=frozenset({"radio set freq 868100000"}))
    opened: list[FakeLine] = []

    async def opener(section: ModemSection) -> FakeLine:
        opened.append(FakeLine(modem))
        return opened[-1]

    section = ModemSection(modem="rn2483", port="/dev/fake", reopen_initial_s=0.01, reopen_cap_s=0.02)
    driver = ModemDriver("p2p-2", section, codec_for("raw"), opener)  # type: ignore[arg-type]
    await run_until(driver, sink, lambda: len(opened) >= 3)
    assert all(line.closed for line in opened[:-1])
    assert [e.kind for e in sink.events] == ["device_error"]  # once per failure series
    assert driver.statistics().reopens >= 2


async def test_unplugged_port_raises_device_error_from_opener_and_retries(sink) -> None:
    attempts = 0

    async def opener(section: ModemSection) -> FakeLine:
        nonlocal attempts
        attempts += 1
        raise DeviceError("/dev/fake: cannot open")

    section = ModemSection(modem="rak3172", port="/dev/fake", reopen_initial_s=0.01, reopen_cap_s=0.02)
    driver = ModemDriver("p2p-3", section, codec_for("raw"), opener)  # type: ignore[arg-type]
    await run_until(driver, sink, lambda: attempts >= 3)


@pytest.mark.parametrize(("work_mode", "silent"), [(1, False), (1, True), (0, False)])
async def test_rui3_is_switched_to_p2p_only_when_needed(work_mode: int, silent: bool, sink) -> None:
    modem = ModemEmulator("rak3172", work_mode=work_mode, silent_restart=silent)
    line = FakeLine(modem)

    async def opener(section: ModemSection) -> FakeLine:
        return line

    section = ModemSection(modem="rak3172", port="/dev/fake", codec="em300_th")
    driver = ModemDriver("p2p-4", section, codec_for("em300_th"), opener)  # type: ignore[arg-type]
    await run_until(driver, sink, lambda: modem.receiving)
    assert modem.work_mode == 0
    assert modem.restarts == work_mode  # a module already in P2P mode is not restarted
    assert ("AT+NWM=0" in modem.commands) is (work_mode == 1)
    assert modem.commands.index("AT+NWM=?") < modem.commands.index("AT+P2P=868100000:7:125:0:8:14")
    assert sink.events == []  # no failed session on the way


class SameReadLine(FakeLine):
    """Answers `AT+PRECV` and, in the same read, the first packet (a fast sender)."""

    def __init__(self, modem: ModemEmulator, packet: bytes) -> None:
        super().__init__(modem)
        self.packet = packet

    async def write(self, data: bytes) -> None:
        answer = self.modem.answer(data.decode().strip())
        if data.startswith(b"AT+PRECV"):
            answer += self.modem.packet(self.packet, rssi=-50, snr=3)
        self.inbox.put_nowait(answer)


async def test_packet_in_the_same_read_as_the_last_answer_is_not_lost(sink) -> None:
    modem = ModemEmulator("rak3172", work_mode=0)
    line = SameReadLine(modem, em300_th(3.5, 40.0))

    async def opener(section: ModemSection) -> FakeLine:
        return line

    section = ModemSection(modem="rak3172", port="/dev/fake", codec="em300_th")
    driver = ModemDriver("p2p-5", section, codec_for("em300_th"), opener)  # type: ignore[arg-type]
    await run_until(driver, sink, lambda: driver.statistics().packets >= 1)
    assert [r.value for r in sink.readings if r.quantity == "temperature"] == [3.5]
