"""The GWMP server over real UDP sockets, driven by the packet-forwarder simulator."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from conftest import forwarder_running

from drivers.lora import gwmp
from drivers.lora.codecs import codec_for
from drivers.lora.forwarder import LorawanDevice, PacketForwarderServer
from drivers.lora.lorawan.crypto import SessionKey
from drivers.lora.lorawan.devices import DeviceProfile, Session
from hil.recording import RecordingSink
from hil.sims.packet_forwarder import (
    DEMO_DEVICES,
    GATEWAY_A,
    ForwarderEmulator,
    ScenarioOptions,
    SimDevice,
    build_uplink,
    plan_scenario,
    run_scenario,
)


def devices(sims: tuple[SimDevice, ...] = DEMO_DEVICES) -> list[LorawanDevice]:
    return [
        LorawanDevice(
            DeviceProfile(
                d.device_id,
                abp=Session(d.devaddr, SessionKey.from_hex(d.nwkskey), SessionKey.from_hex(d.appskey)),
            ),
            codec_for(d.codec),
        )
        for d in sims
    ]


@asynccontextmanager
async def serving(
    sink: RecordingSink, state_path: Path | None = None, window: float = 0.05
) -> AsyncIterator[PacketForwarderServer]:
    server = PacketForwarderServer("127.0.0.1", 0, devices(), state_path=state_path, dedup_window_s=window)
    async with forwarder_running(server, sink):
        yield server


async def settle(server: PacketForwarderServer, uplinks: int) -> None:
    async with asyncio.timeout(10):
        while server.statistics().uplinks < uplinks:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # anything still pending would show up now


async def test_thousand_uplink_scenario_decodes_each_genuine_uplink_once() -> None:
    sink = RecordingSink()
    plan, expect = plan_scenario(options=ScenarioOptions(uplinks=1000, seed=7))
    async with serving(sink) as server:
        assert server.bound is not None
        await run_scenario(server.bound, plan)
        await settle(server, 1000)
        stats = server.statistics()
    assert stats.uplinks == 1000
    assert stats.decode_errors == 0
    for reason in ("duplicate", "crc_failed", "replay", "unknown_devaddr"):
        assert expect.bad[reason] > 0, reason
        assert stats.dropped.get(reason, 0) == expect.bad[reason], reason
    assert set(stats.dropped) <= {"duplicate", "crc_failed", "replay", "unknown_devaddr"}
    for device in DEMO_DEVICES:  # one rssi reading per decoded uplink: each genuine one exactly once
        assert len(sink.values(device.device_id, "rssi")) == len(expect.genuine[device.device_id])
    level = next(d for d in DEMO_DEVICES if d.codec == "dl_mbx")
    distances = [int.from_bytes(p[5:7], "big") for _, p in expect.genuine[level.device_id]]
    assert sink.values(level.device_id, "distance") == distances
    # the EM300 device starts at FCnt 65530 and crosses the 16-bit rollover
    rolled = next(d for d in DEMO_DEVICES if d.first_fcnt)
    assert expect.genuine[rolled.device_id][-1][0] > 0xFFFF
    assert len(sink.values(rolled.device_id, "temperature")) == len(expect.genuine[rolled.device_id])


async def test_duplicate_keeps_best_signal_as_metadata() -> None:
    sink = RecordingSink()
    device = DEMO_DEVICES[0]
    phy = build_uplink(device, 1, 1, bytes.fromhex("02012f000304d200010bb1"))
    weak = gwmp.RxPacket(phy, 868.1, rssi=-115.0, lsnr=-7.0, tmst=1)
    strong = gwmp.RxPacket(phy, 868.1, rssi=-70.0, lsnr=9.5, tmst=1)
    async with serving(sink, window=0.3) as server:
        assert server.bound is not None
        async with ForwarderEmulator(server.bound, 1) as one, ForwarderEmulator(server.bound, 2) as two:
            async with asyncio.timeout(2):
                await one.push([weak])
                await two.push([strong])
        await settle(server, 1)
    assert sink.values(device.device_id, "rssi") == [-70.0]
    assert sink.values(device.device_id, "snr") == [9.5]
    assert sink.values(device.device_id, "distance") == [1234.0]


async def test_replay_protection_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state" / "lorawan.json"
    device = DEMO_DEVICES[1]
    frames = [build_uplink(device, n, 2, bytes.fromhex("cbf60b0d0376017fff7fff")) for n in (10, 11)]
    first_sink = RecordingSink()
    async with serving(first_sink, state) as server:
        assert server.bound is not None
        async with ForwarderEmulator(server.bound, GATEWAY_A) as fw, asyncio.timeout(2):
            await fw.push([gwmp.RxPacket(frames[1], 868.3, rssi=-90.0)])
        await settle(server, 1)
    assert state.stat().st_mode & 0o777 == 0o600
    second_sink = RecordingSink()
    async with serving(second_sink, state) as server:
        assert server.bound is not None
        async with ForwarderEmulator(server.bound, GATEWAY_A) as fw, asyncio.timeout(2):
            await fw.push([gwmp.RxPacket(frames[0], 868.3, rssi=-90.0)])
            await fw.push([gwmp.RxPacket(frames[1], 868.3, rssi=-90.0)])
        await asyncio.sleep(0.2)
        stats = server.statistics()
    assert stats.uplinks == 0
    assert stats.dropped == {"replay": 2}


async def test_gwmp_acks_versions_stat_and_malformed_datagrams() -> None:
    sink = RecordingSink()
    async with serving(sink) as server:
        assert server.bound is not None
        async with ForwarderEmulator(server.bound, 0x0102030405060708, version=1) as fw:
            async with asyncio.timeout(2):
                await fw.pull()
                await fw.push(
                    [], stat={"time": "2026-11-26 10:00:00 GMT", "rxnb": 5, "rxok": 4, "ackr": 100.0}
                )
            await fw.send_raw(b"\x02\x00")  # too short: counted, not answered
            await fw.send_raw(b"\x07\x12\x34\x00" + bytes(8) + b"{}")  # unknown version
            token = 0xBEEF
            await fw.send_raw(bytes([2, 0xBE, 0xEF, 0]) + bytes(8) + b"{not json")
            async with asyncio.timeout(2):
                await fw._expect_ack(token, gwmp.Identifier.PUSH_ACK)
        stats = server.statistics()
    assert stats.malformed_datagrams == 3
    assert stats.pull_data == 1
    assert stats.forwarders == 1
    gw = "lora-gw-0102030405060708"
    assert sink.values(gw, "forwarder_rxok") == [4.0]
    assert sink.values(gw, "forwarder_ackr") == [100.0]


async def test_simulator_waits_for_a_server_that_starts_after_it() -> None:
    # the demo starts the packet-forwarder emulator before the agent has bound its port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    device = DEMO_DEVICES[0]
    plan = [
        (
            GATEWAY_A,
            gwmp.RxPacket(
                build_uplink(device, 1, 1, bytes.fromhex("02012f000304d200010bb1")), 868.1, rssi=-90.0
            ),
        )
    ]
    sink = RecordingSink()
    sender = asyncio.create_task(run_scenario(("127.0.0.1", port), plan, connect_s=20))
    await asyncio.sleep(0.3)  # let the first PULL_DATA go unanswered
    server = PacketForwarderServer("127.0.0.1", port, devices(), dedup_window_s=0.01)
    task = asyncio.create_task(server.run(sink))
    try:
        assert await sender == 0
        await settle(server, 1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sink.values(device.device_id, "distance") == [1234.0]


async def test_simulator_command_line_with_its_switches() -> None:
    sink = RecordingSink()
    async with serving(sink) as server:
        assert server.bound is not None
        host, port = server.bound
        simulator = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hil.sims.packet_forwarder", "--target", f"{host}:{port}", "--uplinks", "40",
            "--crc-failures", "0", "--duplicates", "1", "--replays", "0", "--unknown-devaddr", "0", "--no-rollover",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, _ = await simulator.communicate()
        await settle(server, 40)
        stats = server.statistics()
    assert simulator.returncode == 0
    assert "unacknowledged 0" in out.decode()
    assert (stats.uplinks, stats.dropped) == (40, {"duplicate": 40})  # every uplink heard twice


def test_rollover_switch() -> None:
    def highest_counter(options: ScenarioOptions) -> int:
        _, expect = plan_scenario(options=options)
        return max(fcnt for sent in expect.genuine.values() for fcnt, _ in sent)

    assert highest_counter(ScenarioOptions(uplinks=40, rollover=False)) < 100
    assert highest_counter(ScenarioOptions(uplinks=40)) > 0xFFFF
