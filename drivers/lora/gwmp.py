"""Semtech UDP packet-forwarder protocol (GWMP), sans-I/O.

Layout from Semtech's packet_forwarder PROTOCOL.TXT (protocol versions 1 and 2) and the SX1302
HAL's additions (`tmms`, `rssis`, `foff`, `rsig`): a 4-byte header (version, 2-byte token,
identifier), an 8-byte gateway EUI for upstream messages, then a JSON object.
`parse_datagram` raises only ProtocolError; a PUSH_DATA with a broken JSON body still parses
(it must be acknowledged) and says what was wrong in `body_error`. Bodies are bounded before
json.loads sees them: nesting deeper than MAX_DEPTH (Python's json recurses once per level, and
a 64 KB datagram of brackets raised RecursionError, issue 13) or a datagram longer than
MAX_DATAGRAM is refused like any other malformed body.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from kernel.errors import ProtocolError

SUPPORTED_VERSIONS = frozenset({1, 2})
_HEADER = struct.Struct(">BHB")
_UPSTREAM = struct.Struct(">BHBQ")
_INT_LIMIT = 1 << 63  # no GWMP field needs more; JSON integers have no bound
#: the deepest GWMP JSON is {"rxpk": [{"rsig": [{...}]}]}, 4 levels; 8 leaves room for extensions
MAX_DEPTH = 8
#: the largest UDP payload over IPv4; Semtech's forwarders send at most a few KB per PUSH_DATA
MAX_DATAGRAM = 65_507
#: where the nesting depth can change: a bracket, or a string (whose brackets do not count)
_STRUCTURE = re.compile(rb'[\[\]{}"]')
#: the rest of a JSON string after its opening quote; possessive, so a scan is linear in its length
_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*+"', re.DOTALL)


def _too_deep(body: bytes) -> bool:
    """Whether `body` nests brackets deeper than MAX_DEPTH; linear in its length."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:  # most bodies stop here
        return False
    depth, at = 0, 0
    while (found := _STRUCTURE.search(body, at)) is not None:
        at = found.end()
        char = found.group()
        if char == b'"':
            rest = _STRING_REST.match(body, at)
            if rest is None:
                return False  # unterminated: json.loads refuses it at this depth
            at = rest.end()
        elif char in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
            if depth <= 0:
                return False  # the document ends here: json.loads refuses anything after it
    return False


def _loads(body: bytes) -> Any:
    """json.loads of a bounded body: ValueError (like any malformed JSON) when it nests too deep."""
    if _too_deep(body):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(body.decode())  # str: skips json's encoding detection on the hot path
    except RecursionError:  # cannot happen after _too_deep; kept so that it never escapes if it did
        raise ValueError("JSON nested too deep") from None


class Identifier(enum.IntEnum):
    """Byte 3 of every datagram."""

    PUSH_DATA = 0
    PUSH_ACK = 1
    PULL_DATA = 2
    PULL_RESP = 3
    PULL_ACK = 4
    TX_ACK = 5


@dataclass(frozen=True, slots=True)
class RxPacket:
    """One `rxpk` object: a received radio packet and its RF metadata."""

    data: bytes
    freq: float
    rssi: float
    lsnr: float | None = None
    stat: int = 1
    modu: str = "LORA"
    datr: str | int = "SF7BW125"
    codr: str | None = "4/5"
    tmst: int | None = None
    time: str | None = None
    tmms: int | None = None
    chan: int | None = None
    rfch: int | None = None
    rssis: float | None = None
    foff: int | None = None

    @property
    def crc_ok(self) -> bool:
        """stat 1: CRC checked and good (-1: bad CRC, 0: no CRC)."""
        return self.stat == 1


@dataclass(frozen=True, slots=True)
class PushData:
    """PUSH_DATA: packets and/or a status report from one forwarder."""

    version: int
    token: int
    gateway_eui: int
    rxpk: tuple[RxPacket, ...] = ()
    stat: dict[str, Any] | None = None
    #: rxpk entries that could not be read (missing or mistyped fields)
    bad_rxpk: int = 0
    #: set when the JSON body could not be read at all
    body_error: str | None = None


@dataclass(frozen=True, slots=True)
class PullData:
    """PULL_DATA: a forwarder's keep-alive that opens the downlink path."""

    version: int
    token: int
    gateway_eui: int


@dataclass(frozen=True, slots=True)
class TxAck:
    """TX_ACK: the forwarder's answer to a PULL_RESP (error None or "NONE" means sent).

    SX1302 forwarders (PROTOCOL.md v1.5) report a downlink sent with a limitation as
    `{"txpk_ack": {"warn": "TX_POWER", "value": 20}}`: sent, with `warning` "TX_POWER=20".
    """

    version: int
    token: int
    gateway_eui: int
    error: str | None = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        """True when the forwarder accepted the downlink."""
        return self.error in (None, "NONE")


Upstream = PushData | PullData | TxAck


@dataclass(frozen=True, slots=True)
class TxPacket:
    """The `txpk` of a PULL_RESP: one downlink to send."""

    data: bytes
    freq: float
    datr: str
    tmst: int | None = None
    powe: int = 14
    codr: str = "4/5"
    rfch: int = 0
    ipol: bool = True
    modu: str = "LORA"
    extra: dict[str, Any] = field(default_factory=dict)


def parse_datagram(data: bytes) -> Upstream:
    """Read one datagram sent by a packet forwarder."""
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError(f"datagram too long ({len(data)} bytes)")
    if len(data) < 4:
        raise ProtocolError(f"datagram too short ({len(data)} bytes)")
    version, token, ident = _HEADER.unpack_from(data)
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(f"unsupported protocol version {version}")
    if ident not in (Identifier.PUSH_DATA, Identifier.PULL_DATA, Identifier.TX_ACK):
        raise ProtocolError(f"identifier {ident} is not sent by a forwarder")
    if len(data) < 12:
        raise ProtocolError(f"datagram type {ident} too short ({len(data)} bytes)")
    eui = _UPSTREAM.unpack_from(data)[3]
    if ident == Identifier.PULL_DATA:
        return PullData(version, token, eui)
    body = data[12:]
    if ident == Identifier.TX_ACK:
        return TxAck(version, token, eui, *_tx_ack_status(body))
    return _push_data(version, token, eui, body)


def _tx_ack_status(body: bytes) -> tuple[str | None, str | None]:
    """(error, warning) of a TX_ACK body; an empty body means sent without remarks."""
    if not body.strip(b"\x00 \n"):
        return None, None
    try:
        status = _loads(body.rstrip(b"\x00"))["txpk_ack"]
        if not isinstance(status, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return "MALFORMED", None
    error = status.get("error")
    warn = status.get("warn")
    if warn is not None and status.get("value") is not None:
        warn = f"{warn}={status['value']}"
    return (None if error is None else str(error)), (None if warn is None else str(warn))


def _push_data(version: int, token: int, eui: int, body: bytes) -> PushData:
    try:
        obj = _loads(body)
    except ValueError as exc:  # UnicodeDecodeError and too deep included
        return PushData(version, token, eui, body_error=f"JSON: {exc}")
    if not isinstance(obj, dict):
        return PushData(version, token, eui, body_error="JSON body is not an object")
    packets: list[RxPacket] = []
    bad = 0
    raw_list = obj.get("rxpk", [])
    if not isinstance(raw_list, list):
        raw_list, bad = [], 1
    for raw in raw_list:
        try:
            packets.append(rx_packet_from_json(raw))
        except ProtocolError:
            bad += 1
    stat = obj.get("stat")
    if stat is not None and not isinstance(stat, dict):
        stat, bad = None, bad + 1
    return PushData(version, token, eui, tuple(packets), stat, bad)


def _num(raw: dict[str, Any], key: str, kind: type[int] | type[float]) -> Any:
    """A finite JSON number as `kind`, None when absent (Python's json also reads NaN, 1e400, 10**400)."""
    value = raw.get(key)
    if value is None:
        return None
    of = type(value)  # `type is`, not isinstance: a bool is no number here
    if of is int and -_INT_LIMIT < value < _INT_LIMIT:
        return kind(value)
    if of is float and math.isfinite(value):
        return kind(value)
    raise ProtocolError(f"rxpk.{key} is not a finite number")


def _signal(raw: dict[str, Any]) -> tuple[float, float | None, float | None]:
    """RSSI/SNR from the legacy fields, or from the first antenna of an SX1302 `rsig` list."""
    rssi, lsnr, rssis = _num(raw, "rssi", float), _num(raw, "lsnr", float), _num(raw, "rssis", float)
    rsig = raw.get("rsig")
    if rssi is None and isinstance(rsig, list) and rsig and isinstance(rsig[0], dict):
        first = rsig[0]
        rssi = _num(first, "rssic", float)
        lsnr = _num(first, "lsnr", float) if lsnr is None else lsnr
        rssis = _num(first, "rssis", float) if rssis is None else rssis
    if rssi is None:
        raise ProtocolError("rxpk has no rssi")
    return rssi, lsnr, rssis


def rx_packet_from_json(raw: Any) -> RxPacket:
    """One `rxpk` JSON object as an RxPacket; ProtocolError when a field is missing or wrong."""
    if not isinstance(raw, dict):
        raise ProtocolError("rxpk entry is not an object")
    try:
        text = raw["data"]
        # "padded" says PROTOCOL.TXT, yet its own example packets are not: accept both
        payload = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise ProtocolError("rxpk.data missing or not base64") from None
    size = _num(raw, "size", int)
    if size is not None and size != len(payload):
        raise ProtocolError(f"rxpk.size {size} != {len(payload)} data bytes")
    freq = _num(raw, "freq", float)
    if freq is None:
        raise ProtocolError("rxpk has no freq")
    rssi, lsnr, rssis = _signal(raw)
    datr = raw.get("datr", "SF7BW125")
    if not isinstance(datr, str | int) or isinstance(datr, bool):
        raise ProtocolError("rxpk.datr is neither a string nor a number")
    stat = _num(raw, "stat", int)
    return RxPacket(
        data=payload,
        freq=freq,
        rssi=rssi,
        lsnr=lsnr,
        stat=1 if stat is None else stat,
        modu=str(raw.get("modu", "LORA")),
        datr=datr,
        codr=None if raw.get("codr") is None else str(raw["codr"]),
        tmst=_num(raw, "tmst", int),
        time=None if raw.get("time") is None else str(raw["time"]),
        tmms=_num(raw, "tmms", int),
        chan=_num(raw, "chan", int),
        rfch=_num(raw, "rfch", int),
        rssis=rssis,
        foff=_num(raw, "foff", int),
    )


def push_ack(version: int, token: int) -> bytes:
    """PUSH_ACK for a PUSH_DATA (same version and token)."""
    return _HEADER.pack(version, token, Identifier.PUSH_ACK)


def pull_ack(version: int, token: int) -> bytes:
    """PULL_ACK for a PULL_DATA (same version and token)."""
    return _HEADER.pack(version, token, Identifier.PULL_ACK)


def pull_resp(version: int, token: int, txpk: TxPacket) -> bytes:
    """PULL_RESP carrying one downlink (version 1 forwarders expect token 0)."""
    obj: dict[str, Any] = {
        "imme": txpk.tmst is None,
        "freq": txpk.freq,
        "rfch": txpk.rfch,
        "powe": txpk.powe,
        "modu": txpk.modu,
        "datr": txpk.datr,
        "codr": txpk.codr,
        "ipol": txpk.ipol,
        "size": len(txpk.data),
        "data": base64.b64encode(txpk.data).decode("ascii"),
        **txpk.extra,
    }
    if txpk.tmst is not None:
        obj["tmst"] = txpk.tmst & 0xFFFFFFFF
    body = json.dumps({"txpk": obj}, separators=(",", ":")).encode()
    return _HEADER.pack(version, token if version >= 2 else 0, Identifier.PULL_RESP) + body


def rx_packet_to_json(packet: RxPacket) -> dict[str, Any]:
    """The `rxpk` JSON object of a packet (used by the simulator and tests)."""
    obj: dict[str, Any] = {
        "freq": packet.freq,
        "stat": packet.stat,
        "modu": packet.modu,
        "datr": packet.datr,
        "rssi": packet.rssi,
        "size": len(packet.data),
        "data": base64.b64encode(packet.data).decode("ascii"),
    }
    optional = {
        "lsnr": packet.lsnr,
        "codr": packet.codr,
        "tmst": packet.tmst,
        "time": packet.time,
        "tmms": packet.tmms,
        "chan": packet.chan,
        "rfch": packet.rfch,
        "rssis": packet.rssis,
        "foff": packet.foff,
    }
    obj.update({key: value for key, value in optional.items() if value is not None})
    return obj


def build_push_data(
    version: int,
    token: int,
    gateway_eui: int,
    rxpk: list[RxPacket] | None = None,
    stat: dict[str, Any] | None = None,
) -> bytes:
    """A PUSH_DATA datagram as a forwarder sends it."""
    obj: dict[str, Any] = {}
    if rxpk:
        obj["rxpk"] = [rx_packet_to_json(p) for p in rxpk]
    if stat is not None:
        obj["stat"] = stat
    body = json.dumps(obj, separators=(",", ":")).encode()
    return _UPSTREAM.pack(version, token, Identifier.PUSH_DATA, gateway_eui) + body


def build_pull_data(version: int, token: int, gateway_eui: int) -> bytes:
    """A PULL_DATA datagram as a forwarder sends it."""
    return _UPSTREAM.pack(version, token, Identifier.PULL_DATA, gateway_eui)


def build_tx_ack(version: int, token: int, gateway_eui: int, error: str | None = None) -> bytes:
    """A TX_ACK datagram as a forwarder sends it."""
    body = b"" if error is None else json.dumps({"txpk_ack": {"error": error}}).encode()
    return _UPSTREAM.pack(version, token, Identifier.TX_ACK, gateway_eui) + body


def parse_downstream(data: bytes) -> tuple[int, int, Identifier, dict[str, Any] | None]:
    """(version, token, identifier, JSON body) of a datagram a server sends (for simulators)."""
    if len(data) < 4:
        raise ProtocolError("datagram too short")
    version, token, ident = _HEADER.unpack_from(data)
    if ident not in (Identifier.PUSH_ACK, Identifier.PULL_ACK, Identifier.PULL_RESP):
        raise ProtocolError(f"identifier {ident} is not sent by a server")
    body = None
    if ident == Identifier.PULL_RESP:
        try:
            body = _loads(data[4:])
        except ValueError as exc:
            raise ProtocolError(f"PULL_RESP JSON: {exc}") from None
    return version, token, Identifier(ident), body
