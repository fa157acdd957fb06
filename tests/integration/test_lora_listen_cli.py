"""`gateway lorawan listen` as a technician runs it, fed by the packet-forwarder emulator over UDP."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from drivers.lora import gwmp
from hil.sims.packet_forwarder import DEMO_DEVICES, GATEWAY_A, ForwarderEmulator, build_uplink


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def push_until_acknowledged(port: int, packets: list[gwmp.RxPacket]) -> None:
    """The listener needs a moment to bind: PULL_DATA is sent again until it answers, then the packets."""
    async with ForwarderEmulator(("127.0.0.1", port), GATEWAY_A) as fw, asyncio.timeout(30):
        await fw.pull()  # resent until the listener answers
        for packet in packets:
            await fw.push([packet])


def test_listen_shows_each_packet_with_rssi_snr_and_stops_after_count() -> None:
    port = free_udp_port()
    device = DEMO_DEVICES[0]
    good = gwmp.RxPacket(build_uplink(device, 77, 1, b"\x01"), 868.3, rssi=-97.0, lsnr=-4.5, datr="SF9BW125")
    bad_crc = gwmp.RxPacket(b"\x40\x00\x01", 867.1, rssi=-120.0, lsnr=-19.0, stat=-1)
    with subprocess.Popen(
        [sys.executable, "-m", "gateway", "lorawan", "listen", "--port", str(port), "--count", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as listener:
        try:
            asyncio.run(push_until_acknowledged(port, [good, bad_crc]))
            out, err = listener.communicate(timeout=30)
        finally:
            listener.kill()
    assert listener.returncode == 0, err
    first, second = (json.loads(line) for line in out.splitlines())
    assert {k: first[k] for k in ("gateway", "freq", "datr", "rssi", "snr", "crc", "mtype", "devaddr", "fcnt")} == {
        "gateway": f"{GATEWAY_A:016x}", "freq": 868.3, "datr": "SF9BW125", "rssi": -97.0, "snr": -4.5,
        "crc": "ok", "mtype": "UnconfirmedDataUp", "devaddr": f"{device.devaddr:08x}", "fcnt": 77,
    }  # fmt: skip
    assert (second["crc"], second["rssi"], second["snr"]) == ("bad", -120.0, -19.0)


@pytest.mark.parametrize("output", [["--json"], []])
def test_listen_on_a_port_in_use_exits_2_with_one_line(output: list[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "lorawan", "listen", "--port", str(port), *output],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot bind" in result.stderr
    assert "listening" not in result.stderr  # it never was
