"""One PHYPayload explained for a technician (what `gateway lorawan decode` prints)."""

from __future__ import annotations

from typing import Any

from drivers.lora.lorawan.crypto import (
    DOWNLINK,
    UPLINK,
    SessionKey,
    data_mic,
    decrypt_join_accept,
    frm_cipher,
    join_mic,
)
from drivers.lora.lorawan.fcnt import infer_fcnt32
from drivers.lora.lorawan.phypayload import (
    MType,
    parse_data_frame,
    parse_join_accept_plain,
    parse_join_request,
    parse_mhdr,
)
from kernel.errors import ProtocolError


def describe_frame(
    phy: bytes,
    *,
    nwkskey: SessionKey | None = None,
    appskey: SessionKey | None = None,
    app_key: SessionKey | None = None,
    fcnt_hint: int | None = None,
) -> dict[str, Any]:
    """Fields of a data frame or join-request; decrypted and MIC-checked when keys are given.

    `fcnt_hint` is the last 32-bit frame counter known for the device (for the upper 16 bits).
    Raises ProtocolError when the bytes are not a LoRaWAN 1.0 frame.
    """
    mtype = parse_mhdr(phy)
    if mtype == MType.JoinAccept:
        return _join_accept(phy, app_key)
    if mtype == MType.JoinRequest:
        request = parse_join_request(phy)
        valid = None if app_key is None else join_mic(app_key, request.signed) == request.mic
        return {
            "mtype": mtype.name,
            "join_eui": f"{request.app_eui:016x}",
            "dev_eui": f"{request.dev_eui:016x}",
            "dev_nonce": request.dev_nonce,
            "mic_valid": valid,
        }
    frame = parse_data_frame(phy)
    direction = UPLINK if frame.uplink else DOWNLINK
    fcnt = infer_fcnt32(fcnt_hint, frame.fcnt) if fcnt_hint is not None else frame.fcnt
    mic_valid = None
    if nwkskey is not None:
        mic_valid = data_mic(nwkskey, frame.signed, direction, frame.devaddr, fcnt) == frame.mic
    key = nwkskey if frame.fport == 0 else appskey
    payload = frame.frm_payload
    if key is not None:
        payload = frm_cipher(key, payload, direction, frame.devaddr, fcnt)
    out: dict[str, Any] = {
        "mtype": mtype.name,
        "devaddr": f"{frame.devaddr:08x}",
        "fcnt": fcnt,
        "fport": frame.fport,
        "payload": payload.hex(),
        "mic_valid": mic_valid,
    }
    if frame.fopts:
        out["fopts"] = frame.fopts.hex()
    if key is None and payload:
        out["payload_encrypted"] = True
    return out


def _join_accept(phy: bytes, app_key: SessionKey | None) -> dict[str, Any]:
    """A join-accept: encrypted with the AppKey, so only its size can be checked without it."""
    if len(phy) not in (17, 33):
        raise ProtocolError(f"a join-accept has 17 or 33 bytes, got {len(phy)}")
    if app_key is None:
        return {"mtype": MType.JoinAccept.name, "encrypted": True, "mic_valid": None}
    plain = phy[:1] + decrypt_join_accept(app_key, phy[1:])
    accept = parse_join_accept_plain(plain)
    out: dict[str, Any] = {
        "mtype": MType.JoinAccept.name,
        "app_nonce": accept.app_nonce,
        "net_id": f"{accept.net_id:06x}",
        "devaddr": f"{accept.devaddr:08x}",
        "dl_settings": accept.dl_settings,
        "rx_delay": accept.rx_delay,
        "mic_valid": join_mic(app_key, plain[:-4]) == accept.mic,
    }
    if accept.cf_list:
        out["cf_list"] = accept.cf_list.hex()
    return out
