"""The network-server part the gateway runs for its own devices (sans-I/O, no clock).

`LorawanNetwork.receive(...)` takes one radio packet with the forwarder's metadata; data frames
are verified (MIC), checked against replays, decrypted and held for the de-duplication window;
`flush(now_s)` hands out the uplinks whose window closed, each once, with the best copy's
RF metadata. Join-requests are answered at once (see join.py). Every dropped packet is counted
by reason.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from drivers.lora.gwmp import RxPacket
from drivers.lora.lorawan.crypto import UPLINK, SessionKey, data_mic, frm_cipher
from drivers.lora.lorawan.devices import DeviceProfile, Session
from drivers.lora.lorawan.fcnt import infer_fcnt32, is_fresh
from drivers.lora.lorawan.join import JoinAnswer, JoinServer
from drivers.lora.lorawan.phypayload import DataFrame, MType, parse_data_frame, parse_mhdr
from drivers.lora.lorawan.state import NetworkState
from kernel.errors import ProtocolError

#: how long a frame's bytes are remembered to call a late copy a duplicate, not a replay
RECENT_S = 10.0
#: upper 16-bit counter halves tried for a device's first frame (16: up to 1,048,575 frames sent)
FIRST_FRAME_EPOCHS = 16


class Drop(enum.StrEnum):
    """Why a received packet produced no uplink."""

    CRC = "crc_failed"
    #: stat 0: received without a CRC; LoRaWAN uplinks carry one (downlinks do not: a neighbour's)
    NO_CRC = "no_crc"
    MALFORMED = "malformed_frame"
    NOT_UPLINK = "not_an_uplink"
    UNKNOWN_DEVADDR = "unknown_devaddr"
    MIC = "mic_failed"
    REPLAY = "replay"
    DUPLICATE = "duplicate"
    UNKNOWN_DEVEUI = "unknown_deveui"
    JOIN_MIC = "join_mic_failed"
    DEVNONCE_REPLAY = "devnonce_replay"


@dataclass(frozen=True, slots=True)
class RxMeta:
    """Where and how well a frame was heard."""

    gateway_eui: int
    rssi: float
    snr: float | None
    freq: float
    datr: str | int
    tmst: int | None

    def better_than(self, other: RxMeta) -> bool:
        """Higher SNR wins, then higher RSSI."""
        mine = (self.snr if self.snr is not None else -99.0, self.rssi)
        theirs = (other.snr if other.snr is not None else -99.0, other.rssi)
        return mine > theirs


@dataclass(frozen=True, slots=True)
class Uplink:
    """A verified, decrypted data uplink of a known device."""

    device_id: str
    devaddr: int
    mtype: MType
    fcnt: int
    fport: int | None
    payload: bytes
    received_ms: int
    meta: RxMeta
    copies: int = 1

    @property
    def confirmed(self) -> bool:
        """The device asked for an acknowledgement."""
        return self.mtype == MType.ConfirmedDataUp


@dataclass
class _Pending:
    uplink: Uplink
    meta: RxMeta
    copies: int
    deadline: float


def rx_meta(gateway_eui: int, rx: RxPacket) -> RxMeta:
    """The RF metadata of one received copy."""
    return RxMeta(gateway_eui, rx.rssi, rx.lsnr, rx.freq, rx.datr, rx.tmst)


@dataclass
class LorawanNetwork:
    """ABP and OTAA devices behind one or more packet forwarders."""

    devices: list[DeviceProfile]
    state: NetworkState = field(default_factory=NetworkState)
    dedup_window_s: float = 0.2
    net_id: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    accepted: int = 0

    def __post_init__(self) -> None:
        self._sessions: dict[int, tuple[DeviceProfile, Session]] = {}
        self._pending: dict[bytes, _Pending] = {}
        self._recent: dict[bytes, float] = {}
        for device in self.devices:
            if device.abp is not None:
                self._sessions[device.abp.devaddr] = (device, device.abp)
        self.joins = JoinServer(self.devices, self.state, self.net_id, self._sessions)
        self.joins.restore_sessions()

    def receive(self, gateway_eui: int, rx: RxPacket, now_s: float, wall_ms: int) -> JoinAnswer | None:
        """Take one received packet; a join-request may produce a join-accept to send."""
        if not rx.crc_ok:
            self.dropped[Drop.NO_CRC if rx.stat == 0 else Drop.CRC] += 1
            return None
        phy = rx.data
        if phy in self._pending:
            self._merge_copy(phy, rx_meta(gateway_eui, rx))
            return None
        if self._recent.get(phy, -1.0) > now_s:
            self.dropped[Drop.DUPLICATE] += 1
            return None
        try:
            mtype = parse_mhdr(phy)
            if mtype == MType.JoinRequest:
                return self._join(phy, gateway_eui, rx, now_s)
            if not mtype.is_uplink:
                self.dropped[Drop.NOT_UPLINK] += 1
                return None
            frame = parse_data_frame(phy)
        except ProtocolError:
            self.dropped[Drop.MALFORMED] += 1
            return None
        self._data(frame, phy, rx_meta(gateway_eui, rx), now_s, wall_ms)
        return None

    def flush(self, now_s: float) -> list[Uplink]:
        """Uplinks whose de-duplication window has closed, oldest first."""
        out = []
        # insertion order is deadline order (one window length for all): stop at the first open one
        while self._pending:
            key, pending = next(iter(self._pending.items()))
            if pending.deadline > now_s:
                break
            del self._pending[key]
            self._recent[key] = now_s + RECENT_S
            up = pending.uplink
            if pending.copies == 1:  # heard once: nothing to merge
                out.append(up)
                continue
            out.append(
                Uplink(
                    up.device_id, up.devaddr, up.mtype, up.fcnt, up.fport, up.payload,
                    up.received_ms, pending.meta, pending.copies,
                )
            )  # fmt: skip
        while self._recent:
            key, until = next(iter(self._recent.items()))
            if until > now_s:
                break
            del self._recent[key]
        return out

    def next_deadline(self) -> float | None:
        """The earliest time `flush` has something to hand out."""
        return next(iter(self._pending.values())).deadline if self._pending else None

    def _merge_copy(self, phy: bytes, meta: RxMeta) -> None:
        pending = self._pending[phy]
        pending.copies += 1
        self.dropped[Drop.DUPLICATE] += 1
        if meta.better_than(pending.meta):
            pending.meta = meta

    def _join(self, phy: bytes, gateway_eui: int, rx: RxPacket, now_s: float) -> JoinAnswer | None:
        result = self.joins.handle(phy, gateway_eui, rx)
        if isinstance(result, str):
            self.dropped[result] += 1
            return None
        self._recent[phy] = now_s + RECENT_S
        return result

    def _data(self, frame: DataFrame, phy: bytes, meta: RxMeta, now_s: float, wall_ms: int) -> None:
        found = self._sessions.get(frame.devaddr)
        if found is None:
            self.dropped[Drop.UNKNOWN_DEVADDR] += 1
            return
        device, session = found
        dev_state = self.state.device(device.device_id)
        fcnt32 = _verified_fcnt(device, session, frame, dev_state.fcnt_up)
        if fcnt32 is None:
            self.dropped[Drop.MIC] += 1
            return
        if not is_fresh(dev_state.fcnt_up, fcnt32) and not device.relax_fcnt:
            self.dropped[Drop.REPLAY] += 1
            return
        dev_state.fcnt_up = fcnt32
        self.state.dirty = True
        key: SessionKey = session.nwkskey if frame.fport == 0 else session.appskey
        payload = frm_cipher(key, frame.frm_payload, UPLINK, frame.devaddr, fcnt32)
        uplink = Uplink(
            device.device_id,
            frame.devaddr,
            frame.mtype,
            fcnt32,
            frame.fport,
            payload,
            wall_ms,
            meta,
        )
        self.accepted += 1
        self._pending[phy] = _Pending(uplink, meta, 1, now_s + self.dedup_window_s)


def _verified_fcnt(device: DeviceProfile, session: Session, frame: DataFrame, last: int | None) -> int | None:
    """The 32-bit counter the frame's MIC verifies with, or None (a forgery or a wrong key).

    The inferred counter comes first. Without any history (a new gateway, a lost state file)
    the device may be well past 65535: the upper halves up to FIRST_FRAME_EPOCHS are tried.
    A `relax_fcnt` device may have restarted from 0 after passing 65535: then the 16 bits
    sent are the whole counter.
    """
    inferred = infer_fcnt32(last, frame.fcnt)
    candidates = [inferred]
    if last is None:
        candidates += [frame.fcnt | epoch << 16 for epoch in range(1, FIRST_FRAME_EPOCHS)]
    elif device.relax_fcnt and inferred != frame.fcnt:
        candidates.append(frame.fcnt)
    for fcnt32 in candidates:
        if data_mic(session.nwkskey, frame.signed, UPLINK, frame.devaddr, fcnt32) == frame.mic:
            return fcnt32
    return None
