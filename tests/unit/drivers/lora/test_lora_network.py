"""The sans-I/O LoRaWAN network: counter inference, replays, de-duplication, joins, state."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.lora.gwmp import RxPacket
from drivers.lora.lorawan.crypto import SessionKey
from drivers.lora.lorawan.devices import DeviceProfile, OtaaIdentity, Session
from drivers.lora.lorawan.fcnt import MAX_FCNT_GAP, infer_fcnt32
from drivers.lora.lorawan.network import LorawanNetwork
from drivers.lora.lorawan.phypayload import parse_data_frame
from drivers.lora.lorawan.state import NetworkState, load_state, save_state
from hil.sims.packet_forwarder import DEMO_DEVICES, OtaaSimDevice, SimDevice, build_uplink
from kernel.errors import ProtocolError, StorageError


@pytest.mark.parametrize(
    ("last", "fcnt16", "expected"),
    [
        (None, 7, 7),  # first frame of a session
        (5, 6, 6),
        (5, 5, 5),  # same counter again: not fresh
        (5, 3, 3),  # older frame
        (0xFFFE, 0x0001, 0x10001),  # 16-bit rollover
        (0x1FFFF, 0x0000, 0x20000),
        (0x2FFF0, 0x0010, 0x30010),
        (0x10005, 0xFFFE, 0x0FFFE),  # old frame from before the rollover
        (100, 100 + MAX_FCNT_GAP, 100 + MAX_FCNT_GAP),  # largest advance bridged
        (100, 100 + MAX_FCNT_GAP + 1, 0),  # too far ahead: taken as an old frame
    ],
)
def test_fcnt_inference_table(last: int | None, fcnt16: int, expected: int) -> None:
    assert infer_fcnt32(last, fcnt16) == expected


@settings(max_examples=300, deadline=None)
@given(last=st.integers(0, 0xFFFF0000), step=st.integers(1, MAX_FCNT_GAP))
def test_any_advance_within_the_gap_is_recovered(last: int, step: int) -> None:
    assert infer_fcnt32(last, (last + step) & 0xFFFF) == last + step


def profile(device: SimDevice) -> DeviceProfile:
    return DeviceProfile(
        device.device_id,
        abp=Session(device.devaddr, SessionKey.from_hex(device.nwkskey), SessionKey.from_hex(device.appskey)),
    )


DEVICE = DEMO_DEVICES[0]


def rx(phy: bytes, rssi: float = -90.0, snr: float | None = 5.0, stat: int = 1) -> RxPacket:
    return RxPacket(phy, 868.1, rssi=rssi, lsnr=snr, stat=stat, tmst=1)


def test_uplink_is_decrypted_and_held_for_the_dedup_window() -> None:
    net = LorawanNetwork([profile(DEVICE)], dedup_window_s=0.5)
    net.receive(1, rx(build_uplink(DEVICE, 3, 1, b"hello")), 10.0, 1234)
    assert net.flush(10.4) == []
    [uplink] = net.flush(10.5)
    assert (uplink.device_id, uplink.fcnt, uplink.fport, uplink.payload, uplink.received_ms) == (
        DEVICE.device_id, 3, 1, b"hello", 1234,
    )  # fmt: skip


def test_copies_merge_and_the_best_signal_wins() -> None:
    net = LorawanNetwork([profile(DEVICE)], dedup_window_s=0.5)
    phy = build_uplink(DEVICE, 3, 1, b"x")
    net.receive(1, rx(phy, -100, 1.0), 0.0, 0)
    net.receive(2, rx(phy, -60, 8.0), 0.1, 0)
    net.receive(3, rx(phy, -50, -3.0), 0.2, 0)
    [uplink] = net.flush(1.0)
    assert (uplink.meta.gateway_eui, uplink.copies) == (2, 3)
    assert net.dropped == {"duplicate": 2}


def test_wrong_key_counts_mic_failure_and_does_not_advance_the_counter() -> None:
    net = LorawanNetwork([profile(DEVICE)], dedup_window_s=0)
    forged = SimDevice("x", DEVICE.devaddr, "00" * 16, DEVICE.appskey, "raw")
    net.receive(1, rx(build_uplink(forged, 1000, 1, b"evil")), 0.0, 0)
    net.receive(1, rx(build_uplink(DEVICE, 5, 1, b"good")), 0.0, 0)
    assert [u.fcnt for u in net.flush(1.0)] == [5]
    assert net.dropped == {"mic_failed": 1}


def test_old_counter_is_a_replay_unless_relaxed() -> None:
    strict = LorawanNetwork([profile(DEVICE)], dedup_window_s=0)
    relaxed_profile = DeviceProfile(DEVICE.device_id, abp=profile(DEVICE).abp, relax_fcnt=True)
    relaxed = LorawanNetwork([relaxed_profile], dedup_window_s=0)
    for net in (strict, relaxed):
        net.receive(1, rx(build_uplink(DEVICE, 50, 1, b"a")), 0.0, 0)
        net.receive(1, rx(build_uplink(DEVICE, 2, 1, b"after reset")), 0.0, 0)
    assert len(strict.flush(1.0)) == 1 and strict.dropped == {"replay": 1}
    assert [u.fcnt for u in relaxed.flush(1.0)] == [50, 2]


def test_crc_unknown_and_malformed_are_counted() -> None:
    net = LorawanNetwork([profile(DEVICE)], dedup_window_s=0)
    net.receive(1, rx(build_uplink(DEVICE, 1, 1, b"a"), stat=-1), 0.0, 0)
    net.receive(1, rx(build_uplink(DEVICE, 2, 1, b"a"), stat=0), 0.0, 0)  # no CRC at all
    net.receive(
        1,
        rx(build_uplink(SimDevice("s", 0x01020304, DEVICE.nwkskey, DEVICE.appskey, "raw"), 1, 1, b"a")),
        0.0,
        0,
    )
    net.receive(1, rx(b"\x40\x01"), 0.0, 0)
    net.receive(1, rx(b"\x60" + bytes(11)), 0.0, 0)  # a downlink heard by the gateway
    assert net.flush(1.0) == []
    assert net.dropped == {
        "crc_failed": 1, "no_crc": 1, "unknown_devaddr": 1, "malformed_frame": 1, "not_an_uplink": 1,
    }  # fmt: skip


def test_state_round_trip_keeps_replay_protection(tmp_path: Path) -> None:
    net = LorawanNetwork([profile(DEVICE)], dedup_window_s=0)
    net.receive(1, rx(build_uplink(DEVICE, 9, 1, b"a")), 0.0, 0)
    path = tmp_path / "s.json"
    save_state(path, net.state.to_json())
    again = LorawanNetwork([profile(DEVICE)], load_state(path), dedup_window_s=0)
    again.receive(1, rx(build_uplink(DEVICE, 9, 1, b"b")), 0.0, 0)
    again.receive(1, rx(build_uplink(DEVICE, 10, 1, b"c")), 0.0, 0)
    assert [u.fcnt for u in again.flush(1.0)] == [10]


def test_damaged_state_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"version": 1, "devices": 3}')
    with pytest.raises(StorageError):
        load_state(path)
    assert load_state(tmp_path / "absent.json").devices == {}


OTAA = OtaaSimDevice("otaa-1", 0x0004A30B001C0530, 0x70B3D57ED0000001, "2b7e151628aed2a6abf7158809cf4f3c")


def otaa_net(state: NetworkState | None = None) -> LorawanNetwork:
    identity = OtaaIdentity(OTAA.dev_eui, OTAA.join_eui, SessionKey.from_hex(OTAA.app_key))
    return LorawanNetwork(
        [DeviceProfile(OTAA.device_id, otaa=identity)], state or NetworkState(), dedup_window_s=0
    )


def test_join_answers_and_session_decodes_uplinks() -> None:
    net = otaa_net()
    answer = net.receive(1, rx(OTAA.join_request(77)), 0.0, 0)
    assert answer is not None
    session = OTAA.accept(answer.phy, 77)
    net.receive(1, rx(build_uplink(session, 0, 1, b"joined")), 0.0, 0)
    assert [u.payload for u in net.flush(0.0)] == [b"joined"]


def test_devnonce_reuse_is_refused_even_after_restart(tmp_path: Path) -> None:
    net = otaa_net()
    assert net.receive(1, rx(OTAA.join_request(5)), 0.0, 0) is not None
    assert net.receive(1, rx(OTAA.join_request(5)), 100.0, 0) is None
    assert net.dropped == {"devnonce_replay": 1}
    path = tmp_path / "s.json"
    save_state(path, net.state.to_json())
    again = otaa_net(load_state(path))
    assert again.receive(1, rx(OTAA.join_request(5)), 0.0, 0) is None
    assert again.receive(1, rx(OTAA.join_request(6)), 0.0, 0) is not None


def test_join_with_wrong_key_or_unknown_eui_is_refused() -> None:
    net = otaa_net()
    wrong_key = OtaaSimDevice("x", OTAA.dev_eui, OTAA.join_eui, "00" * 16)
    stranger = OtaaSimDevice("y", 0x1111, OTAA.join_eui, OTAA.app_key)
    assert net.receive(1, rx(wrong_key.join_request(1)), 0.0, 0) is None
    assert net.receive(1, rx(stranger.join_request(1)), 0.0, 0) is None
    assert net.dropped == {"join_mic_failed": 1, "unknown_deveui": 1}


def test_restored_otaa_session_survives_restart(tmp_path: Path) -> None:
    net = otaa_net()
    answer = net.receive(1, rx(OTAA.join_request(9)), 0.0, 0)
    assert answer is not None
    session = OTAA.accept(answer.phy, 9)
    path = tmp_path / "s.json"
    save_state(path, net.state.to_json())
    again = otaa_net(load_state(path))
    again.receive(1, rx(build_uplink(session, 1, 1, b"still here")), 0.0, 0)
    assert [u.payload for u in again.flush(0.0)] == [b"still here"]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
def test_phypayload_parser_raises_only_protocol_error(data: bytes) -> None:
    try:
        frame = parse_data_frame(data)
    except ProtocolError:
        return
    assert frame.signed + frame.mic == data


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_network_never_raises_on_garbage(data: bytes) -> None:
    net = LorawanNetwork([profile(DEVICE)], dedup_window_s=0)
    net.receive(1, rx(data), 0.0, 0)
    assert net.flush(1.0) == []


def relaxed_net() -> LorawanNetwork:
    relaxed = DeviceProfile(DEVICE.device_id, abp=profile(DEVICE).abp, relax_fcnt=True)
    return LorawanNetwork([relaxed], dedup_window_s=0)


def test_first_frame_of_a_device_past_65535_is_found_without_history() -> None:
    # an ABP device that ran for years before this gateway (or its state file) existed
    net = LorawanNetwork([profile(DEVICE)], dedup_window_s=0)
    net.receive(1, rx(build_uplink(DEVICE, 0x3_0007, 1, b"first")), 0.0, 0)
    net.receive(1, rx(build_uplink(DEVICE, 0x3_0008, 1, b"second")), 0.0, 0)
    net.receive(1, rx(build_uplink(DEVICE, 0x3_0007, 1, b"replayed")), 0.0, 0)
    assert [(u.fcnt, u.payload) for u in net.flush(1.0)] == [(0x30007, b"first"), (0x30008, b"second")]
    assert net.dropped == {"replay": 1}


def test_relaxed_device_that_restarts_after_the_16_bit_rollover_is_decoded() -> None:
    net = relaxed_net()
    net.receive(1, rx(build_uplink(DEVICE, 0x10005, 1, b"before")), 0.0, 0)
    net.receive(1, rx(build_uplink(DEVICE, 2, 1, b"after reset")), 0.0, 0)  # sent with counter 2, not 0x10002
    assert [(u.fcnt, u.payload) for u in net.flush(1.0)] == [(0x10005, b"before"), (2, b"after reset")]
    assert net.dropped == {}


def test_relaxed_old_frame_after_the_rollover_keeps_its_counter_and_payload() -> None:
    net = relaxed_net()
    net.receive(1, rx(build_uplink(DEVICE, 0x10005, 1, b"new")), 0.0, 0)
    net.receive(1, rx(build_uplink(DEVICE, 0x10003, 1, b"older")), 0.0, 0)
    assert [(u.fcnt, u.payload) for u in net.flush(1.0)] == [(0x10005, b"new"), (0x10003, b"older")]


def test_fport_0_uplink_is_decrypted_with_the_nwkskey() -> None:
    net = LorawanNetwork([profile(DEVICE)], dedup_window_s=0)
    net.receive(1, rx(build_uplink(DEVICE, 4, 0, b"\x02")), 0.0, 0)
    assert [(u.fport, u.payload) for u in net.flush(1.0)] == [(0, b"\x02")]
