"""LoRaWAN 1.0.x PHYPayload layouts: parse and build data frames, join-requests, join-accepts.

Sans-I/O: bytes in, frozen dataclasses out; anything that does not fit the layout of the
LoRaWAN 1.0.2 specification (section 4) raises ProtocolError, never anything else.
Multi-byte fields are little-endian on air; DevAddr/EUIs are shown big-endian (as humans write them).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from kernel.errors import ProtocolError

MIC_LEN = 4


class MType(enum.IntEnum):
    """The message type in the top three bits of the MHDR."""

    JoinRequest = 0
    JoinAccept = 1
    UnconfirmedDataUp = 2
    UnconfirmedDataDown = 3
    ConfirmedDataUp = 4
    ConfirmedDataDown = 5
    RejoinRequest = 6
    Proprietary = 7

    @property
    def is_data(self) -> bool:
        """True for the four data message types."""
        return MType.UnconfirmedDataUp <= self <= MType.ConfirmedDataDown

    @property
    def is_uplink(self) -> bool:
        """True for messages a device sends."""
        return self in (MType.JoinRequest, MType.UnconfirmedDataUp, MType.ConfirmedDataUp)


@dataclass(frozen=True, slots=True)
class DataFrame:
    """A data frame as on air; `frm_payload` is still encrypted, `fcnt` is the 16 bits sent."""

    mtype: MType
    devaddr: int
    fctrl: int
    fcnt: int
    fopts: bytes
    fport: int | None
    frm_payload: bytes
    mic: bytes
    #: MHDR up to the end of FRMPayload: what the MIC covers
    signed: bytes

    @property
    def adr(self) -> bool:
        """The device asks for adaptive data rate."""
        return bool(self.fctrl & 0x80)

    @property
    def ack(self) -> bool:
        """The frame acknowledges a confirmed downlink."""
        return bool(self.fctrl & 0x20)

    @property
    def uplink(self) -> bool:
        """True when a device sent this frame."""
        return self.mtype.is_uplink


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """An OTAA join-request (23 bytes on air)."""

    app_eui: int
    dev_eui: int
    dev_nonce: int
    mic: bytes
    signed: bytes


@dataclass(frozen=True, slots=True)
class JoinAccept:
    """A join-accept after decryption (the fields the network chose)."""

    app_nonce: int
    net_id: int
    devaddr: int
    dl_settings: int
    rx_delay: int
    cf_list: bytes
    mic: bytes


_MTYPES = tuple(MType)


def parse_mhdr(phy: bytes) -> MType:
    """The message type of a PHYPayload; ProtocolError when empty or not LoRaWAN R1."""
    if not phy:
        raise ProtocolError("empty PHYPayload")
    if phy[0] & 0x03 != 0:
        raise ProtocolError(f"unsupported LoRaWAN major version {phy[0] & 0x03}")
    return _MTYPES[phy[0] >> 5]  # a tuple lookup: cheaper than MType(...) on the hot path


_FHDR = struct.Struct("<IBH")


def parse_data_frame(phy: bytes) -> DataFrame:
    """Split a data-frame PHYPayload into its fields (no crypto)."""
    mtype = parse_mhdr(phy)
    if not mtype.is_data:
        raise ProtocolError(f"{mtype.name} is not a data frame")
    if len(phy) < 1 + 7 + MIC_LEN:
        raise ProtocolError(f"data frame too short ({len(phy)} bytes)")
    devaddr, fctrl, fcnt = _FHDR.unpack_from(phy, 1)
    fopts_len = fctrl & 0x0F
    body_start = 8 + fopts_len
    end = len(phy) - MIC_LEN
    if body_start > end:
        raise ProtocolError(f"FOptsLen {fopts_len} runs past the end of the frame")
    fport: int | None = None
    frm = b""
    if end > body_start:
        fport = phy[body_start]
        frm = phy[body_start + 1 : end]
        if fport == 0 and fopts_len:
            raise ProtocolError("FPort 0 with FOpts present")
    return DataFrame(
        mtype=mtype,
        devaddr=devaddr,
        fctrl=fctrl,
        fcnt=fcnt,
        fopts=phy[8:body_start],
        fport=fport,
        frm_payload=frm,
        mic=phy[end:],
        signed=phy[:end],
    )


def build_data_frame(
    mtype: MType,
    devaddr: int,
    fcnt: int,
    fport: int | None,
    frm_payload: bytes,
    *,
    fctrl: int = 0,
    fopts: bytes = b"",
) -> bytes:
    """The PHYPayload up to (without) the MIC; the caller appends the MIC."""
    if len(fopts) > 15:
        raise ValueError("FOpts holds at most 15 bytes")
    mhdr = bytes([mtype << 5])
    fhdr = _FHDR.pack(devaddr, (fctrl & 0xF0) | len(fopts), fcnt & 0xFFFF) + fopts
    port = b"" if fport is None else bytes([fport])
    return mhdr + fhdr + port + frm_payload


_JOIN_REQUEST = struct.Struct("<QQH")


def parse_join_request(phy: bytes) -> JoinRequest:
    """Split a join-request PHYPayload into its fields."""
    if parse_mhdr(phy) != MType.JoinRequest:
        raise ProtocolError("not a join-request")
    if len(phy) != 23:
        raise ProtocolError(f"a join-request has 23 bytes, got {len(phy)}")
    app_eui, dev_eui, dev_nonce = _JOIN_REQUEST.unpack_from(phy, 1)
    return JoinRequest(app_eui, dev_eui, dev_nonce, phy[19:], phy[:19])


def build_join_request(app_eui: int, dev_eui: int, dev_nonce: int) -> bytes:
    """A join-request without its MIC."""
    return bytes([MType.JoinRequest << 5]) + _JOIN_REQUEST.pack(app_eui, dev_eui, dev_nonce)


def build_join_accept_plain(
    app_nonce: int,
    net_id: int,
    devaddr: int,
    *,
    dl_settings: int = 0,
    rx_delay: int = 1,
    cf_list: bytes = b"",
) -> bytes:
    """MHDR and the plain join-accept fields, without MIC (section 6.2.5)."""
    if cf_list and len(cf_list) != 16:
        raise ValueError("CFList has 16 bytes")
    return (
        bytes([MType.JoinAccept << 5])
        + app_nonce.to_bytes(3, "little")
        + net_id.to_bytes(3, "little")
        + devaddr.to_bytes(4, "little")
        + bytes([dl_settings, rx_delay])
        + cf_list
    )


def parse_join_accept_plain(phy_plain: bytes) -> JoinAccept:
    """Fields of a decrypted join-accept (MHDR + fields + MIC)."""
    if len(phy_plain) not in (17, 33):
        raise ProtocolError(f"a join-accept has 17 or 33 bytes, got {len(phy_plain)}")
    if parse_mhdr(phy_plain) != MType.JoinAccept:
        raise ProtocolError("not a join-accept")
    return JoinAccept(
        app_nonce=int.from_bytes(phy_plain[1:4], "little"),
        net_id=int.from_bytes(phy_plain[4:7], "little"),
        devaddr=int.from_bytes(phy_plain[7:11], "little"),
        dl_settings=phy_plain[11],
        rx_delay=phy_plain[12],
        cf_list=phy_plain[13:-4],
        mic=phy_plain[-4:],
    )
