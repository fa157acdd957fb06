"""The GWMP server driver: one UDP socket for every packet forwarder and every LoRaWAN device.

Thin glue: datagrams go to `gwmp.parse_datagram`, packets to `LorawanNetwork`, decoded uplinks
through each device's codec into the sink. Acknowledgements are sent at once, also for a
PUSH_DATA whose JSON is broken (the forwarder would otherwise retry it). Join-accepts leave as
PULL_RESP through the address the forwarder's last PULL_DATA came from. Frame counters and OTAA
sessions are saved (in a thread) at most once a second and when the driver stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from drivers.base import Sink
from drivers.lora import gwmp
from drivers.lora.codecs import PayloadCodec
from drivers.lora.junklog import JunkLog
from drivers.lora.lorawan.devices import DeviceProfile
from drivers.lora.lorawan.join import JOIN_ACCEPT_DELAY1_US, JOIN_ACCEPT_DELAY2_US, JoinAnswer
from drivers.lora.lorawan.network import LorawanNetwork, Uplink
from drivers.lora.lorawan.state import NetworkState, load_state, save_state
from drivers.lora.readings import measurement_readings, signal_readings, stat_readings
from kernel.errors import DeviceError, ProtocolError, StorageError
from kernel.model import HealthEvent
from kernel.wallclock import now_ms

log = structlog.get_logger(__name__)

SAVE_INTERVAL_S = 1.0
RX2_FREQ_MHZ = 869.525
RX2_DATR = "SF12BW125"
#: uplinks kept per device for `gateway status` and the agent's `lora_uplinks` request
RECENT_UPLINKS = 10


@dataclass(frozen=True)
class LorawanDevice:
    """A configured LoRaWAN sensor: identity and keys, its codec and what to emit."""

    profile: DeviceProfile
    codec: PayloadCodec
    fports: frozenset[int] | None = None
    signal: bool = True


@dataclass(frozen=True)
class ForwarderStatistics:
    """Counters of one GWMP server (for the CLI and metrics)."""

    datagrams: int
    malformed_datagrams: int
    push_data: int
    pull_data: int
    rxpk: int
    bad_rxpk: int
    uplinks: int
    decode_errors: int
    joins: int
    downlinks: int
    downlinks_unroutable: int
    tx_ack_ok: int
    tx_ack_failed: int
    #: downlinks sent with a limitation (SX1302 `warn`, e.g. lower TX power); also in tx_ack_ok
    tx_ack_warnings: int
    #: TX_ACKs whose body is not GWMP JSON (not in tx_ack_ok/failed)
    tx_ack_junk: int
    #: datagrams whose handling failed on a bug (counted and logged quietly instead of raising)
    handler_errors: int
    forwarders: int
    dropped: dict[str, int] = field(default_factory=dict)


class PacketForwarderServer:
    """A Driver: serves Semtech UDP packet forwarders on `host:port` for the given devices."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: list[LorawanDevice],
        *,
        state_path: Path | None = None,
        dedup_window_s: float = 0.2,
        net_id: int = 0,
        join_rx_window: int = 1,
        on_packet: Callable[[int, gwmp.RxPacket], None] | None = None,
    ) -> None:
        self.name = f"lorawan@{host}:{port}"
        self.host, self.port = host, port
        self._devices = {d.profile.device_id: d for d in devices}
        self._state_path = state_path
        self._dedup_window_s = dedup_window_s
        self._net_id = net_id
        self._join_rx_window = join_rx_window
        self._on_packet = on_packet
        self._network = LorawanNetwork([d.profile for d in devices], NetworkState(), dedup_window_s, net_id)
        self._counts: Counter[str] = Counter()
        self._junk = JunkLog("lorawan.junk")
        self._downlink_addr: dict[int, tuple[tuple[Any, ...], int]] = {}
        self._tx_tokens: dict[int, str] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._wake = asyncio.Event()
        self.bound: tuple[str, int] | None = None
        self._recent: dict[str, deque[dict[str, Any]]] = {}
        #: set once the UDP socket is bound (`gateway lorawan listen` says "listening" only then)
        self.listening = asyncio.Event()

    def statistics(self) -> ForwarderStatistics:
        """A snapshot of the counters."""
        c = self._counts
        return ForwarderStatistics(
            datagrams=c["datagrams"],
            malformed_datagrams=c["malformed_datagrams"],
            push_data=c["push_data"],
            pull_data=c["pull_data"],
            rxpk=c["rxpk"],
            bad_rxpk=c["bad_rxpk"],
            uplinks=c["uplinks"],
            decode_errors=c["decode_errors"],
            joins=c["joins"],
            downlinks=c["downlinks"],
            downlinks_unroutable=c["downlinks_unroutable"],
            tx_ack_ok=c["tx_ack_ok"],
            tx_ack_failed=c["tx_ack_failed"],
            tx_ack_warnings=c["tx_ack_warnings"],
            tx_ack_junk=c["tx_ack_junk"],
            handler_errors=c["handler_errors"],
            forwarders=len(self._downlink_addr),
            dropped=dict(self._network.dropped),
        )

    async def run(self, sink: Sink) -> None:
        """Serve until cancelled; DeviceError when the socket cannot be bound."""
        if self._state_path is not None:
            state = await asyncio.to_thread(load_state, self._state_path)
            self._network = LorawanNetwork(
                list(self._network.devices), state, self._dedup_window_s, self._net_id
            )
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _GwmpProtocol(self, sink), local_addr=(self.host, self.port)
            )
        except OSError as exc:
            raise DeviceError(f"{self.name}: cannot bind UDP socket: {exc.strerror}") from None
        self._transport = transport
        self.bound = transport.get_extra_info("sockname")[:2]
        self.listening.set()
        log.info("lorawan.listening", address=f"{self.bound[0]}:{self.bound[1]}", devices=len(self._devices))
        try:
            await self._serve(sink)
        finally:
            transport.close()
            self._transport = None
            await self._save_state(final=True)

    async def _serve(self, sink: Sink) -> None:
        last_save = time.monotonic()
        while True:
            deadline = self._network.next_deadline()
            timeout = SAVE_INTERVAL_S if deadline is None else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(timeout, SAVE_INTERVAL_S)):
                    await self._wake.wait()
            self._wake.clear()
            for uplink in self._network.flush(time.monotonic()):
                self._emit(uplink, sink)
            if time.monotonic() - last_save >= SAVE_INTERVAL_S:
                await self._save_state()
                last_save = time.monotonic()

    async def _save_state(self, *, final: bool = False) -> None:
        if self._state_path is None or not self._network.state.dirty:
            return
        self._network.state.dirty = False
        snapshot = self._network.state.to_json()
        try:
            await asyncio.to_thread(save_state, self._state_path, snapshot)
        except StorageError as exc:
            self._network.state.dirty = True
            log.warning("lorawan.state_not_saved", error=str(exc), final=final)

    def datagram(self, data: bytes, addr: tuple[Any, ...], sink: Sink) -> None:
        """Handle one datagram (called by the protocol; never raises)."""
        self._counts["datagrams"] += 1
        try:
            self._handle(data, addr, sink)
        except ProtocolError as exc:
            self._counts["malformed_datagrams"] += 1
            self._junk.note("malformed_datagram", time.monotonic(), source=addr[0], error=str(exc)[:200])
        except Exception as exc:  # a bug must cost this datagram, never the socket or a log flood
            self._counts["handler_errors"] += 1
            self._junk.note("handler_error", time.monotonic(), source=addr[0], error=repr(exc)[:200])

    def _handle(self, data: bytes, addr: tuple[Any, ...], sink: Sink) -> None:
        message = gwmp.parse_datagram(data)
        if isinstance(message, gwmp.PullData):
            self._counts["pull_data"] += 1
            self._downlink_addr[message.gateway_eui] = (addr, message.version)
            self._send(gwmp.pull_ack(message.version, message.token), addr)
        elif isinstance(message, gwmp.TxAck):
            self._tx_ack(message, addr)
        else:
            self._send(gwmp.push_ack(message.version, message.token), addr)
            self._push_data(message, sink, addr)

    def _push_data(self, message: gwmp.PushData, sink: Sink, addr: tuple[Any, ...]) -> None:
        self._counts["push_data"] += 1
        now = time.monotonic()
        if message.body_error is not None:
            self._counts["malformed_datagrams"] += 1
            self._junk.note("malformed_push_data", now, source=addr[0], error=message.body_error[:200])
            return
        if message.bad_rxpk:
            self._counts["bad_rxpk"] += message.bad_rxpk
            self._junk.note("bad_rxpk", now, source=addr[0], packets=message.bad_rxpk)
        wall_ms = now_ms()
        for rx in message.rxpk:
            self._counts["rxpk"] += 1
            if self._on_packet is not None:
                self._on_packet(message.gateway_eui, rx)
            answer = self._network.receive(message.gateway_eui, rx, now, wall_ms)
            if answer is not None:
                self._send_join_accept(answer)
        if message.stat is not None:
            for reading in stat_readings(message.gateway_eui, wall_ms, message.stat):
                sink.reading(reading)
        self._wake.set()

    def _send_join_accept(self, answer: JoinAnswer) -> None:
        self._counts["joins"] += 1
        route = self._downlink_addr.get(answer.gateway_eui)
        rx = answer.request
        if route is None or rx.tmst is None:
            self._counts["downlinks_unroutable"] += 1
            log.warning("lorawan.join_accept_unroutable", device=answer.device_id)
            return
        addr, version = route
        if self._join_rx_window == 1:
            txpk = gwmp.TxPacket(answer.phy, rx.freq, str(rx.datr), rx.tmst + JOIN_ACCEPT_DELAY1_US)
        else:
            txpk = gwmp.TxPacket(answer.phy, RX2_FREQ_MHZ, RX2_DATR, rx.tmst + JOIN_ACCEPT_DELAY2_US)
        token = random.getrandbits(16)
        if len(self._tx_tokens) >= 256:  # version-1 forwarders never send TX_ACK
            del self._tx_tokens[next(iter(self._tx_tokens))]
        self._tx_tokens[token] = answer.device_id
        self._counts["downlinks"] += 1
        self._send(gwmp.pull_resp(version, token, txpk), addr)
        log.info("lorawan.joined", device=answer.device_id, devaddr=f"{answer.devaddr:08x}")

    def _tx_ack(self, message: gwmp.TxAck, addr: tuple[Any, ...]) -> None:
        device = self._tx_tokens.pop(message.token, None)
        now = time.monotonic()
        if message.error == "MALFORMED":  # junk: counted and logged quietly, never one WARNING each
            self._counts["tx_ack_junk"] += 1
            self._junk.note("tx_ack_malformed", now, source=addr[0], token=message.token)
            return
        if device is None:  # for no downlink waiting here: sent before a restart, or forged
            self._junk.note(
                "tx_ack_unknown_token", now, source=addr[0], token=message.token, error=message.error
            )
        if message.ok:
            self._counts["tx_ack_ok"] += 1
            if message.warning is not None:
                self._counts["tx_ack_warnings"] += 1
                if device is not None:
                    log.info("lorawan.downlink_limited", device=device, warning=message.warning)
        else:
            self._counts["tx_ack_failed"] += 1
            if device is not None:
                log.warning("lorawan.downlink_refused", device=device, error=message.error)

    def _emit(self, uplink: Uplink, sink: Sink) -> None:
        device = self._devices[uplink.device_id]
        self._counts["uplinks"] += 1
        ts = uplink.received_ms
        self._recent.setdefault(uplink.device_id, deque(maxlen=RECENT_UPLINKS)).append(_summary(uplink))
        if device.signal:
            for reading in signal_readings(uplink.device_id, ts, uplink.meta.rssi, uplink.meta.snr):
                sink.reading(reading)
        if uplink.fport is None or uplink.fport == 0:
            return
        if device.fports is not None and uplink.fport not in device.fports:
            return
        try:
            measurements = device.codec.decode(uplink.fport, uplink.payload)
        except ProtocolError as exc:
            self._counts["decode_errors"] += 1
            sink.event(HealthEvent(ts, uplink.device_id, "decode_error", str(exc)[:200]))
            return
        for reading in measurement_readings(uplink.device_id, ts, measurements):
            sink.reading(reading)

    def recent_uplinks(self) -> dict[str, list[dict[str, Any]]]:
        """The last uplinks of every device heard, oldest first (frame counter, port, link quality)."""
        return {device: list(uplinks) for device, uplinks in self._recent.items()}

    def _send(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)


def _summary(uplink: Uplink) -> dict[str, Any]:
    return {
        "received_ms": uplink.received_ms,
        "fcnt": uplink.fcnt,
        "fport": uplink.fport,
        "rssi": uplink.meta.rssi,
        "snr": uplink.meta.snr,
        "copies": uplink.copies,
        "payload": uplink.payload.hex(),
    }


class _GwmpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: PacketForwarderServer, sink: Sink) -> None:
        self._server = server
        self._sink = sink

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._server.datagram(data, addr, self._sink)

    def error_received(self, exc: Exception) -> None:
        log.debug("lorawan.socket_error", error=str(exc))
