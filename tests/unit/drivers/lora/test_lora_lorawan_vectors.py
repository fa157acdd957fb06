"""Published LoRaWAN 1.0 test vectors.

Source: anthonykirby/lora-packet, __tests__/mic_test.ts, __tests__/decrypt_test.ts,
__tests__/key_gen_test.ts and __tests__/join_accept_encrypt.ts (values copied as data).
The ABP keys there: NwkSKey 44024241ed4ce9a68c6a8bc055233fd3, AppSKey ec925802ae430ca77fd3dd73cb2cc588.
"""

from __future__ import annotations

import pytest

from drivers.lora.lorawan.crypto import (
    UPLINK,
    SessionKey,
    data_mic,
    decrypt_join_accept,
    derive_session_keys,
    encrypt_join_accept,
    frm_cipher,
    join_mic,
)
from drivers.lora.lorawan.phypayload import (
    MType,
    build_join_accept_plain,
    parse_data_frame,
    parse_join_accept_plain,
    parse_join_request,
)

NWKSKEY = SessionKey.from_hex("44024241ed4ce9a68c6a8bc055233fd3")
APPSKEY = SessionKey.from_hex("ec925802ae430ca77fd3dd73cb2cc588")
APPKEY = SessionKey.from_hex("98929b92c49edba9676d646d3b612456")


@pytest.mark.parametrize(
    ("phy_hex", "mic_hex"),
    [
        ("40F17DBE4900020001954378762B11FF0D", "2b11ff0d"),
        ("40F17DBE49000300012A3518AF", "2a3518af"),
        ("60f17dbe4920020001f9d65d27", "f9d65d27"),
    ],
)
def test_data_frame_mic_matches_published_value(phy_hex: str, mic_hex: str) -> None:
    frame = parse_data_frame(bytes.fromhex(phy_hex))
    assert frame.devaddr == 0x49BE7DF1
    direction = 0 if frame.uplink else 1
    mic = data_mic(NWKSKEY, frame.signed, direction, frame.devaddr, frame.fcnt)
    assert mic.hex() == mic_hex == frame.mic.hex()


def test_tampered_mic_does_not_verify() -> None:
    frame = parse_data_frame(bytes.fromhex("40F17DBE49000300012A3518AA"))
    assert data_mic(NWKSKEY, frame.signed, UPLINK, frame.devaddr, frame.fcnt) != frame.mic


@pytest.mark.parametrize(
    ("phy_hex", "key", "plain"),
    [
        ("40F17DBE4900020001954378762B11FF0D", APPSKEY, b"test"),
        (
            "40f17dbe490004000155332de41a11adc072553544429ce7787707d1c316e027e7e5e334263376"
            "affb8aa17ad30075293f28dea8a20af3c5e7",
            APPSKEY,
            b"The quick brown fox jumps over the lazy dog.",
        ),
        (
            "40F17DBE4900020001954378762B11FF0D",
            SessionKey.from_hex("ec925802ae430ca77fd3dd73cb2cc580"),
            bytes.fromhex("5999fc3f"),
        ),
        ("40F17DBE4900020001954478762B11FF0D", APPSKEY, b"tbst"),
    ],
)
def test_frm_payload_decrypts_to_published_plaintext(phy_hex: str, key: SessionKey, plain: bytes) -> None:
    frame = parse_data_frame(bytes.fromhex(phy_hex))
    assert frame.mtype == MType.UnconfirmedDataUp
    assert frm_cipher(key, frame.frm_payload, UPLINK, frame.devaddr, frame.fcnt) == plain


def test_join_request_mic_verifies_with_app_key() -> None:
    request = parse_join_request(bytes.fromhex("0039363463336913AA05693574323831330489C65B1304"))
    assert join_mic(APPKEY, request.signed) == request.mic == bytes.fromhex("c65b1304")
    assert request.app_eui == 0xAA13693363343639


def test_plain_join_accept_mic() -> None:
    plain = bytes.fromhex("20386337CCBBAAE7CD2C010000D9D0A6E7")
    accept = parse_join_accept_plain(plain)
    assert (accept.app_nonce, accept.net_id, accept.devaddr) == (0x376338, 0xAABBCC, 0x012CCDE7)
    assert join_mic(APPKEY, plain[:-4]) == accept.mic


def test_session_keys_match_published_derivation() -> None:
    nwk, app = derive_session_keys(APPKEY, app_nonce=0x376338, net_id=0xAABBCC, dev_nonce=0xF18E)
    assert nwk.hex() == "4e3d6e6afbcc67af2ba3c8e8ec4acf4b"
    assert app.hex() == "610897aa6f1460623443b527d3ac6a9d"


def test_join_accept_encryption_matches_published_ciphertext() -> None:
    zero_key = SessionKey(bytes(16))
    plain = build_join_accept_plain(0, 0, 0, dl_settings=0, rx_delay=0)
    mic = join_mic(zero_key, plain)
    assert mic.hex() == "f86f0a91"
    cipher = plain[:1] + encrypt_join_accept(zero_key, plain[1:] + mic)
    assert cipher.hex() == "20e3de108795f776b8037610ef7869b5b3"
    assert decrypt_join_accept(zero_key, cipher[1:]) == plain[1:] + mic


def test_keys_do_not_show_in_repr() -> None:
    assert "4402" not in repr(NWKSKEY)
