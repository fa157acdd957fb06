"""OTAA over real UDP: join-request in, join-accept out as PULL_RESP at RX1 or RX2, then data uplinks."""

from __future__ import annotations

import asyncio
import base64

import pytest
from conftest import forwarder_running
from structlog.testing import capture_logs

from drivers.lora import gwmp
from drivers.lora.codecs import codec_for
from drivers.lora.forwarder import LorawanDevice, PacketForwarderServer
from drivers.lora.lorawan.crypto import SessionKey
from drivers.lora.lorawan.devices import DeviceProfile, OtaaIdentity
from hil.recording import RecordingSink
from hil.sims.lora_payloads import em300_th
from hil.sims.packet_forwarder import ForwarderEmulator, OtaaSimDevice, build_uplink

DEVICE = OtaaSimDevice(
    "harbour-th-1", 0x70B3D57ED0001234, 0x70B3D57ED0000000, "98929b92c49edba9676d646d3b612456"
)


async def test_join_then_uplink_and_devnonce_replay() -> None:
    profile = DeviceProfile(
        DEVICE.device_id,
        otaa=OtaaIdentity(DEVICE.dev_eui, DEVICE.join_eui, SessionKey.from_hex(DEVICE.app_key)),
    )
    server = PacketForwarderServer(
        "127.0.0.1", 0, [LorawanDevice(profile, codec_for("em300_th"))], dedup_window_s=0.02, net_id=0x000013
    )
    sink = RecordingSink()
    with capture_logs() as captured:
        async with forwarder_running(server, sink) as address:
            async with ForwarderEmulator(address, 0x1122334455667788) as fw, asyncio.timeout(5):
                await fw.pull()
                request = gwmp.RxPacket(
                    DEVICE.join_request(0x0102), 868.3, rssi=-80.0, lsnr=7.0, tmst=1_000_000, datr="SF9BW125"
                )
                await fw.push([request])
                downlink = await fw.next_downlink()
                txpk = downlink["txpk"]
                assert txpk["tmst"] == 1_000_000 + 5_000_000
                assert (txpk["freq"], txpk["datr"], txpk["ipol"], txpk["imme"]) == (
                    868.3,
                    "SF9BW125",
                    True,
                    False,
                )
                session = DEVICE.accept(base64.b64decode(txpk["data"]), 0x0102)
                assert session.devaddr >> 25 == 0x13  # NwkID from the NetID
                phy = build_uplink(session, 0, 1, em300_th(21.5, 55.0))
                await fw.push([gwmp.RxPacket(phy, 868.1, rssi=-82.0)])
                await fw.push([request])  # the same DevNonce again: refused
                while server.statistics().uplinks < 1 or server.statistics().tx_ack_ok < 1:
                    await asyncio.sleep(0.02)
            stats = server.statistics()
    # keys are never logged: not the AppKey, not the session keys derived from it
    assert "lorawan.joined" in {entry["event"] for entry in captured}  # the capture did see the join
    logged = repr(captured)
    for secret in (DEVICE.app_key, session.nwkskey, session.appskey):
        assert secret.lower() not in logged.lower()
    assert stats.joins == 1 and stats.downlinks == 1 and stats.tx_ack_ok == 1
    assert stats.dropped.get("duplicate", 0) + stats.dropped.get("devnonce_replay", 0) == 1
    temps = [r.value for r in sink.readings if r.sensor == DEVICE.device_id and r.quantity == "temperature"]
    assert temps == [21.5]


@pytest.mark.parametrize(
    ("window", "expected"),
    [(1, (6_000_000, 868.3, "SF9BW125")), (2, (7_000_000, 869.525, "SF12BW125"))],
)
async def test_join_accept_timing_in_rx1_or_rx2(window: int, expected: tuple[int, float, str]) -> None:
    # EU868: RX1 = JOIN_ACCEPT_DELAY1 (5 s) after the request on its channel and data rate,
    # RX2 = JOIN_ACCEPT_DELAY2 (6 s) on 869.525 MHz SF12BW125
    profile = DeviceProfile(
        DEVICE.device_id,
        otaa=OtaaIdentity(DEVICE.dev_eui, DEVICE.join_eui, SessionKey.from_hex(DEVICE.app_key)),
    )
    server = PacketForwarderServer(
        "127.0.0.1", 0, [LorawanDevice(profile, codec_for("raw"))], dedup_window_s=0.02, join_rx_window=window
    )
    async with (
        forwarder_running(server, RecordingSink()) as address,
        ForwarderEmulator(address, 0x0102030405060708) as fw,
        asyncio.timeout(5),
    ):
        await fw.pull()
        await fw.push(
            [gwmp.RxPacket(DEVICE.join_request(7), 868.3, rssi=-80.0, tmst=1_000_000, datr="SF9BW125")]
        )
        txpk = (await fw.next_downlink())["txpk"]
    assert (txpk["tmst"], txpk["freq"], txpk["datr"]) == expected
    DEVICE.accept(base64.b64decode(txpk["data"]), 7)  # a join-accept whose MIC verifies
