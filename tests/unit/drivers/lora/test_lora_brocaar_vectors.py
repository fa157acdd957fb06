"""Published LoRaWAN 1.0 test vectors of brocaar/lorawan (the library under ChirpStack).

Source: github.com/brocaar/lorawan, phypayload_test.go at commit a4c0dd13fa10a178336214ee6cd8cedf0e8d0613:
TestPHYPayloadMACPayloadLoRaWAN10 (data frames: FRMPayload, MAC commands in FOpts, MAC commands
in FRMPayload on FPort 0), ExamplePHYPayload_lorawan10Encode, TestPHYPayloadJoinRequest,
ExamplePHYPayload_joinRequest, TestPHYPayloadJoinAccept and ExamplePHYPayload_joinAcceptSend.
Byte lists and keys copied as data; brocaar writes DevAddr, EUIs and NetID big-endian, as we show them.
Besides the parser and crypto, these check the frame builder the simulator uses (`build_uplink`)
and that the network decrypts FPort 0 with the NwkSKey, not the AppSKey.
"""

from __future__ import annotations

import base64

import pytest

from drivers.lora.gwmp import RxPacket
from drivers.lora.lorawan.crypto import (
    UPLINK,
    SessionKey,
    data_mic,
    encrypt_join_accept,
    frm_cipher,
    join_mic,
)
from drivers.lora.lorawan.devices import DeviceProfile, Session
from drivers.lora.lorawan.network import LorawanNetwork
from drivers.lora.lorawan.phypayload import (
    MType,
    build_data_frame,
    build_join_accept_plain,
    build_join_request,
    parse_data_frame,
    parse_join_request,
)
from hil.sims.packet_forwarder import SimDevice, build_uplink

ONES = "01" * 16
TWOS = "02" * 16
COUNTING = bytes(range(1, 17)).hex()  # [16]byte{1, 2, ..., 16}
COUNTING_DOWN = bytes(range(16, 0, -1)).hex()  # [16]byte{16, 15, ..., 1}
LINK_CHECK_REQ_AND_LINK_ADR_ANS = bytes([0x02, 0x03, 0b101])  # mac1, mac2 of the test table

# (name, PHYPayload, NwkSKey, AppSKey, FCtrl, FOpts, FPort, plaintext FRMPayload)
DATA_VECTORS = [
    (
        "FRMPayload data",
        bytes([64, 4, 3, 2, 1, 128, 1, 0, 1, 166, 148, 100, 38, 21, 214, 195, 181, 130]),
        TWOS, ONES, 0x80, b"", 1, b"hello",
    ),
    (
        "Mac-commands in FOpts",
        bytes([64, 4, 3, 2, 1, 3, 0, 0, 2, 3, 5, 1, 106, 55, 152, 245, 182, 77, 192, 57]),
        ONES, ONES, 0x00, LINK_CHECK_REQ_AND_LINK_ADR_ANS, 1, bytes([1, 2, 3, 4]),
    ),
    (
        "Mac-commands in FRMPayload",
        bytes([64, 4, 3, 2, 1, 0, 0, 0, 0, 105, 54, 158, 238, 106, 165, 8]),
        ONES, ONES, 0x00, b"", 0, LINK_CHECK_REQ_AND_LINK_ADR_ANS,
    ),
]  # fmt: skip
IDS = [v[0] for v in DATA_VECTORS]


@pytest.mark.parametrize(
    ("name", "phy", "nwk", "app", "fctrl", "fopts", "fport", "plain"), DATA_VECTORS, ids=IDS
)
def test_data_frames_parse_verify_and_decrypt(
    name: str, phy: bytes, nwk: str, app: str, fctrl: int, fopts: bytes, fport: int, plain: bytes
) -> None:
    frame = parse_data_frame(phy)
    assert (frame.mtype, frame.devaddr, frame.fopts, frame.fport) == (
        MType.UnconfirmedDataUp, 0x01020304, fopts, fport,
    )  # fmt: skip
    assert frame.adr == bool(fctrl & 0x80)
    nwkskey = SessionKey.from_hex(nwk)
    assert data_mic(nwkskey, frame.signed, UPLINK, frame.devaddr, frame.fcnt) == frame.mic
    key = nwkskey if fport == 0 else SessionKey.from_hex(app)
    assert frm_cipher(key, frame.frm_payload, UPLINK, frame.devaddr, frame.fcnt) == plain


@pytest.mark.parametrize(
    ("name", "phy", "nwk", "app", "fctrl", "fopts", "fport", "plain"), DATA_VECTORS, ids=IDS
)
def test_frame_builder_reproduces_the_published_bytes(
    name: str, phy: bytes, nwk: str, app: str, fctrl: int, fopts: bytes, fport: int, plain: bytes
) -> None:
    fcnt = parse_data_frame(phy).fcnt
    key = SessionKey.from_hex(nwk if fport == 0 else app)
    body = build_data_frame(
        MType.UnconfirmedDataUp, 0x01020304, fcnt, fport,
        frm_cipher(key, plain, UPLINK, 0x01020304, fcnt), fctrl=fctrl, fopts=fopts,
    )  # fmt: skip
    assert body + data_mic(SessionKey.from_hex(nwk), body, UPLINK, 0x01020304, fcnt) == phy


def test_simulator_builds_the_published_fport_0_frame_with_the_nwkskey() -> None:
    # the AppSKey differs from the NwkSKey here: using it for FPort 0 would give other bytes
    device = SimDevice("brocaar", 0x01020304, ONES, "99" * 16, "raw")
    assert build_uplink(device, 0, 0, LINK_CHECK_REQ_AND_LINK_ADR_ANS) == DATA_VECTORS[2][1]


def test_lorawan10_encode_example_with_fopts_on_a_confirmed_uplink() -> None:
    published = bytes([128, 4, 3, 2, 1, 3, 0, 0, 6, 115, 7, 10, 226, 100, 212, 247, 225, 23, 210, 192])
    assert base64.b64decode("gAQDAgEDAAAGcwcK4mTU9+EX0sA=") == published
    frame = parse_data_frame(published)
    assert (frame.mtype, frame.fopts, frame.fport) == (MType.ConfirmedDataUp, bytes([6, 115, 7]), 10)
    app = SessionKey.from_hex(COUNTING_DOWN)
    assert frm_cipher(app, frame.frm_payload, UPLINK, frame.devaddr, 0) == bytes([1, 2, 3, 4])
    body = build_data_frame(
        MType.ConfirmedDataUp, 0x01020304, 0, 10, frame.frm_payload, fopts=bytes([6, 115, 7])
    )
    assert body + data_mic(SessionKey.from_hex(COUNTING), body, UPLINK, 0x01020304, 0) == published


def test_network_decrypts_fport_0_with_the_nwkskey_and_data_with_the_appskey() -> None:
    nwk_ones = DeviceProfile(
        "fport0", abp=Session(0x01020304, SessionKey.from_hex(ONES), SessionKey.from_hex("99" * 16))
    )
    net = LorawanNetwork([nwk_ones], dedup_window_s=0)
    net.receive(1, RxPacket(DATA_VECTORS[2][1], 868.1, rssi=-80.0), 0.0, 0)
    [uplink] = net.flush(0.0)
    assert (uplink.fport, uplink.payload) == (0, LINK_CHECK_REQ_AND_LINK_ADR_ANS)
    data = DeviceProfile(
        "data", abp=Session(0x01020304, SessionKey.from_hex(TWOS), SessionKey.from_hex(ONES))
    )
    net = LorawanNetwork([data], dedup_window_s=0)
    net.receive(1, RxPacket(DATA_VECTORS[0][1], 868.1, rssi=-80.0), 0.0, 0)
    assert [(u.fcnt, u.payload) for u in net.flush(0.0)] == [(1, b"hello")]


def test_join_request_fields_and_mic() -> None:
    request = parse_join_request(base64.b64decode("AAQDAgEEAwIBBQQDAgUEAwItEGqZDhI="))
    assert (request.app_eui, request.dev_eui, request.dev_nonce) == (
        0x0102030401020304, 0x0203040502030405, 4141,
    )  # fmt: skip
    assert join_mic(SessionKey.from_hex(ONES), request.signed) == request.mic


def test_join_request_example_is_rebuilt_byte_for_byte() -> None:
    body = build_join_request(0x0101010101010101, 0x0202020202020202, 771)
    phy = body + join_mic(SessionKey.from_hex(COUNTING), body)
    assert phy == bytes([0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 9, 185, 123, 50])


@pytest.mark.parametrize(
    ("app_key", "app_nonce", "net_id", "devaddr", "published"),
    [
        (
            "00112233445566778899aabbccddeeff", 5704647, 0x221101, 0x02031980,
            bytes.fromhex("20493eeb51fba2116f810edb3742975142"),
        ),
        (
            COUNTING, 65793, 0x020202, 0x01020304,
            bytes([32, 35, 207, 51, 84, 137, 170, 227, 24, 60, 11, 224, 186, 168, 222, 229, 243]),
        ),
    ],
)  # fmt: skip
def test_join_accept_generation_and_encryption(
    app_key: str, app_nonce: int, net_id: int, devaddr: int, published: bytes
) -> None:
    key = SessionKey.from_hex(app_key)
    plain = build_join_accept_plain(app_nonce, net_id, devaddr, dl_settings=0, rx_delay=0)
    accept = plain[:1] + encrypt_join_accept(key, plain[1:] + join_mic(key, plain))
    assert accept == published


def test_join_accept_mic_is_the_published_one() -> None:
    key = SessionKey.from_hex("00112233445566778899aabbccddeeff")
    plain = build_join_accept_plain(5704647, 0x221101, 0x02031980, dl_settings=0, rx_delay=0)
    assert join_mic(key, plain) == bytes([67, 72, 91, 188])
