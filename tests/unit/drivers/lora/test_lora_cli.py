"""`gateway lorawan decode`: what a technician sees for good, bad-MIC and malformed frames."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gateway.cli.lorawan import group

NWK = "44024241ed4ce9a68c6a8bc055233fd3"
APP = "ec925802ae430ca77fd3dd73cb2cc588"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(group, ["decode", *args])
    return result.exit_code, result.stdout, result.stderr


def test_decode_published_frame_as_json() -> None:
    code, out, _ = run("40F17DBE4900020001954378762B11FF0D", "--nwkskey", NWK, "--appskey", APP, "--json")
    assert code == 0
    assert json.loads(out) == {
        "mtype": "UnconfirmedDataUp",
        "devaddr": "49be7df1",
        "fcnt": 2,
        "fport": 1,
        "payload": "74657374",
        "mic_valid": True,
    }


def test_wrong_mic_still_exits_zero_and_says_so() -> None:
    code, out, _ = run("40F17DBE49000300012A3518AA", "--nwkskey", NWK, "--appskey", APP, "--json")
    assert code == 0
    assert json.loads(out)["mic_valid"] is False


def test_fcnt_hint_supplies_the_upper_counter_bits() -> None:
    code, out, _ = run(
        "40F17DBE4900020001954378762B11FF0D", "--nwkskey", NWK, "--fcnt-hint", str(0x1FFF0), "--json"
    )
    fields = json.loads(out)
    assert code == 0
    assert fields["fcnt"] == 0x20002
    assert fields["mic_valid"] is False  # the published frame was sent with counter 2


def test_malformed_frame_exits_two_with_one_line() -> None:
    code, _, err = run("40F17DBE49", "--nwkskey", NWK)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "malformed" in err


def test_bad_key_exits_two_without_echoing_it() -> None:
    code, _, err = run("40F17DBE4900020001954378762B11FF0D", "--nwkskey", "secretsecret")
    assert code == 2
    assert "secretsecret" not in err


def test_join_request_with_app_key() -> None:
    code, out, _ = run(
        "0039363463336913AA05693574323831330489C65B1304",
        "--appkey",
        "98929b92c49edba9676d646d3b612456",
        "--json",
    )
    fields = json.loads(out)
    assert code == 0
    assert fields["mtype"] == "JoinRequest" and fields["mic_valid"] is True
    assert fields["dev_eui"] == "3331383274356905"


def test_join_accept_is_decrypted_with_the_app_key() -> None:
    # brocaar/lorawan phypayload_test.go TestPHYPayloadJoinAccept
    accept = "20493eeb51fba2116f810edb3742975142"
    code, out, _ = run(accept, "--appkey", "00112233445566778899aabbccddeeff", "--json")
    assert code == 0
    assert json.loads(out) == {
        "mtype": "JoinAccept", "app_nonce": 5704647, "net_id": "221101", "devaddr": "02031980",
        "dl_settings": 0, "rx_delay": 0, "mic_valid": True,
    }  # fmt: skip
    code, out, _ = run(accept, "--json")
    assert (code, json.loads(out)["mic_valid"]) == (0, None)


def test_fport_0_payload_is_decrypted_with_the_nwkskey() -> None:
    # brocaar/lorawan TestPHYPayloadMACPayloadLoRaWAN10 "Mac-commands in FRMPayload"
    phy = bytes([64, 4, 3, 2, 1, 0, 0, 0, 0, 105, 54, 158, 238, 106, 165, 8]).hex()
    code, out, _ = run(phy, "--nwkskey", "01" * 16, "--appskey", "99" * 16, "--json")
    assert code == 0
    assert json.loads(out) == {
        "mtype": "UnconfirmedDataUp", "devaddr": "01020304", "fcnt": 0, "fport": 0, "payload": "020305",
        "mic_valid": True,
    }  # fmt: skip


def test_negative_fcnt_hint_is_refused() -> None:
    code, _, err = run("40F17DBE4900020001954378762B11FF0D", "--fcnt-hint", "-1")
    assert code == 2 and "fcnt-hint" in err
