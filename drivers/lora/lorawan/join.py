"""OTAA for LoRaWAN 1.0.x: verify join-requests, refuse reused DevNonces, answer with a join-accept.

Section 6.2 of the LoRaWAN 1.0.2 specification. The join-accept is sent in RX1 of the
join-request (JOIN_ACCEPT_DELAY1 = 5 s after its end, same channel and data rate in EU868),
or in RX2 (6 s, 869.525 MHz SF12BW125) when configured: the transport builds the PULL_RESP.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from drivers.lora.gwmp import RxPacket
from drivers.lora.lorawan.crypto import (
    SessionKey,
    derive_session_keys,
    encrypt_join_accept,
    join_mic,
)
from drivers.lora.lorawan.devices import DeviceProfile, Session
from drivers.lora.lorawan.phypayload import build_join_accept_plain, parse_join_request
from drivers.lora.lorawan.state import NetworkState
from kernel.errors import ProtocolError

JOIN_ACCEPT_DELAY1_US = 5_000_000
JOIN_ACCEPT_DELAY2_US = 6_000_000
#: RX1DROffset 0, RX2 data rate 0 (EU868 defaults), RxDelay 1 s for later class-A downlinks
DL_SETTINGS = 0x00
RX_DELAY = 1


@dataclass(frozen=True)
class JoinAnswer:
    """A join-accept to send back through the forwarder that heard the request."""

    device_id: str
    devaddr: int
    phy: bytes
    gateway_eui: int
    request: RxPacket


class JoinServer:
    """The join part of the network: holds nothing but what `NetworkState` persists."""

    def __init__(
        self,
        devices: list[DeviceProfile],
        state: NetworkState,
        net_id: int,
        sessions: dict[int, tuple[DeviceProfile, Session]],
    ) -> None:
        self._by_eui = {d.otaa.dev_eui: d for d in devices if d.otaa is not None}
        self._state = state
        self._net_id = net_id
        self._sessions = sessions

    def restore_sessions(self) -> None:
        """Re-activate the OTAA sessions saved before a restart."""
        for device in self._by_eui.values():
            saved = self._state.devices.get(device.device_id)
            if saved and saved.devaddr is not None and saved.nwkskey and saved.appskey:
                session = Session(
                    saved.devaddr,
                    SessionKey.from_hex(saved.nwkskey),
                    SessionKey.from_hex(saved.appskey),
                )
                self._sessions[saved.devaddr] = (device, session)

    def handle(self, phy: bytes, gateway_eui: int, rx: RxPacket) -> JoinAnswer | str:
        """A join-accept for a valid request, or the drop reason (a Drop value)."""
        try:
            request = parse_join_request(phy)
        except ProtocolError:
            return "malformed_frame"
        device = self._by_eui.get(request.dev_eui)
        if device is None or device.otaa is None or device.otaa.join_eui != request.app_eui:
            return "unknown_deveui"
        app_key = device.otaa.app_key
        if join_mic(app_key, request.signed) != request.mic:
            return "join_mic_failed"
        dev_state = self._state.device(device.device_id)
        if request.dev_nonce in dev_state.dev_nonces:
            return "devnonce_replay"
        dev_state.remember_nonce(request.dev_nonce)
        self._state.app_nonce = (self._state.app_nonce + 1) & 0xFFFFFF
        app_nonce = self._state.app_nonce
        devaddr = self._allocate_devaddr(device, dev_state.devaddr)
        nwk, app = derive_session_keys(app_key, app_nonce, self._net_id, request.dev_nonce)
        self._activate(device, dev_state.devaddr, Session(devaddr, SessionKey(nwk), SessionKey(app)))
        dev_state.devaddr, dev_state.nwkskey, dev_state.appskey = devaddr, nwk.hex(), app.hex()
        dev_state.fcnt_up = None
        self._state.dirty = True
        plain = build_join_accept_plain(
            app_nonce, self._net_id, devaddr, dl_settings=DL_SETTINGS, rx_delay=RX_DELAY
        )
        mic = join_mic(app_key, plain)
        accept = plain[:1] + encrypt_join_accept(app_key, plain[1:] + mic)
        return JoinAnswer(device.device_id, devaddr, accept, gateway_eui, rx)

    def _activate(self, device: DeviceProfile, old_addr: int | None, session: Session) -> None:
        if old_addr is not None and self._sessions.get(old_addr, (None,))[0] is device:
            del self._sessions[old_addr]
        self._sessions[session.devaddr] = (device, session)

    def _allocate_devaddr(self, device: DeviceProfile, current: int | None) -> int:
        """A DevAddr with the NetID's NwkID (type-0 layout), stable per device, never shared."""
        if current is not None:
            owner = self._sessions.get(current)
            if owner is None or owner[0] is device:
                return current
        nwk_id = (self._net_id & 0x7F) << 25
        seed = device.device_id.encode()
        for attempt in range(1000):
            digest = hashlib.sha256(seed + attempt.to_bytes(2, "big")).digest()
            candidate = nwk_id | (int.from_bytes(digest[:4], "big") & 0x01FFFFFF)
            if candidate not in self._sessions:
                return candidate
        raise ProtocolError("no free DevAddr left")  # pragma: no cover - 2**25 addresses
