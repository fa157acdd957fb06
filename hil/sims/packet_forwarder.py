"""A Semtech UDP packet-forwarder emulator with ABP devices, for tests, the demo and the bench.

It builds, encrypts and MICs LoRaWAN 1.0 uplinks (with the project's codec: the unit tests check
that codec against published vectors) and sends them as PUSH_DATA to a GWMP server, with
switches for CRC failures, the same frame over a second forwarder, replays and frame-counter
rollover. A "replay" here is a frame with a counter the device already used (a reset device or
an attacker with keys): identical bytes sent again count as duplicates of the first copy.

Run `python -m hil.sims.packet_forwarder --target 127.0.0.1:1700 --uplinks 1000`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from drivers.lora import gwmp
from drivers.lora.lorawan.crypto import (
    UPLINK,
    SessionKey,
    data_mic,
    decrypt_join_accept,
    derive_session_keys,
    frm_cipher,
    join_mic,
)
from drivers.lora.lorawan.phypayload import (
    MType,
    build_data_frame,
    build_join_request,
    parse_join_accept_plain,
)
from hil.sims.lora_payloads import ENCODERS, sample_payload
from kernel.errors import ProtocolError

GATEWAY_A = 0xAA555A0000000001
GATEWAY_B = 0xAA555A0000000002


@dataclass(frozen=True)
class SimDevice:
    """An ABP device the emulator speaks for (keys as hex, like a config file has them)."""

    device_id: str
    devaddr: int
    nwkskey: str
    appskey: str
    codec: str
    first_fcnt: int = 0


DEMO_DEVICES = (
    SimDevice(
        "warnow-level-1",
        0x26011F01,
        "2b7e151628aed2a6abf7158809cf4f3c",
        "000102030405060708090a0b0c0d0e0f",
        "dl_mbx",
    ),
    SimDevice(
        "quay-climate-1",
        0x26011F02,
        "11223344556677889900aabbccddeeff",
        "ffeeddccbbaa00998877665544332211",
        "lht65",
    ),
    SimDevice(
        "bin-temp-1",
        0x26011F03,
        "0f0e0d0c0b0a09080706050403020100",
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
        "em300_th",
        65530,
    ),
    SimDevice(
        "office-ers-1",
        0x26011F04,
        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
        "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
        "elsys",
    ),
)


def build_uplink(
    device: SimDevice, fcnt32: int, fport: int, payload: bytes, *, confirmed: bool = False
) -> bytes:
    """A complete, encrypted and MIC'd uplink PHYPayload."""
    mtype = MType.ConfirmedDataUp if confirmed else MType.UnconfirmedDataUp
    app = SessionKey.from_hex(device.appskey if fport else device.nwkskey)
    frm = frm_cipher(app, payload, UPLINK, device.devaddr, fcnt32)
    body = build_data_frame(mtype, device.devaddr, fcnt32, fport, frm)
    return body + data_mic(SessionKey.from_hex(device.nwkskey), body, UPLINK, device.devaddr, fcnt32)


@dataclass(frozen=True)
class OtaaSimDevice:
    """An OTAA device: sends join-requests, reads the join-accept, becomes an ABP-like session."""

    device_id: str
    dev_eui: int
    join_eui: int
    app_key: str
    codec: str = "em300_th"

    def join_request(self, dev_nonce: int) -> bytes:
        """A join-request with its MIC."""
        body = build_join_request(self.join_eui, self.dev_eui, dev_nonce)
        return body + join_mic(SessionKey.from_hex(self.app_key), body)

    def accept(self, phy: bytes, dev_nonce: int) -> SimDevice:
        """The session a join-accept gives (ProtocolError when its MIC is wrong)."""
        key = SessionKey.from_hex(self.app_key)
        plain = phy[:1] + decrypt_join_accept(key, phy[1:])
        fields = parse_join_accept_plain(plain)
        if join_mic(key, plain[:-4]) != fields.mic:
            raise ProtocolError("join-accept MIC does not verify")
        nwk, app = derive_session_keys(key, fields.app_nonce, fields.net_id, dev_nonce)
        return SimDevice(self.device_id, fields.devaddr, nwk.hex(), app.hex(), self.codec)


@dataclass
class ScenarioOptions:
    """How many uplinks, and how often each fault happens (probabilities per genuine uplink)."""

    uplinks: int = 1000
    crc_failures: float = 0.05
    duplicates: float = 0.3
    replays: float = 0.03
    unknown_devaddr: float = 0.01
    #: devices with a `first_fcnt` start there (DEMO_DEVICES: one at 65530, crossing 65535); else at 0
    rollover: bool = True
    seed: int = 1


@dataclass
class Expectation:
    """What a correct server must report after the scenario."""

    genuine: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    bad: Counter[str] = field(default_factory=Counter)


def _rx(phy: bytes, rng: random.Random, rssi: float, tmst: int, stat: int = 1) -> gwmp.RxPacket:
    return gwmp.RxPacket(
        data=phy, freq=868.1 + 0.2 * rng.randrange(3), rssi=rssi, lsnr=round(rng.uniform(-5, 10), 1),
        stat=stat, datr="SF7BW125", codr="4/5", tmst=tmst, chan=0, rfch=0,
    )  # fmt: skip


def plan_scenario(
    devices: tuple[SimDevice, ...] = DEMO_DEVICES, options: ScenarioOptions | None = None
) -> tuple[list[tuple[int, gwmp.RxPacket]], Expectation]:
    """The (gateway EUI, packet) sequence of a scenario and its expected outcome."""
    opts = options or ScenarioOptions()
    rng = random.Random(opts.seed)
    first = {d.device_id: d.first_fcnt if opts.rollover else 0 for d in devices}
    fcnt = dict(first)
    plan: list[tuple[int, gwmp.RxPacket]] = []
    expect = Expectation({d.device_id: [] for d in devices})
    for i in range(opts.uplinks):
        device = devices[i % len(devices)]
        counter = fcnt[device.device_id]
        fcnt[device.device_id] += 1 + (rng.random() < 0.1)  # sometimes a frame is lost on air
        payload = sample_payload(device.codec, i)
        phy = build_uplink(device, counter, ENCODERS[device.codec], payload)
        tmst = i * 1_000_000
        plan.append((GATEWAY_A, _rx(phy, rng, -80 - rng.random() * 30, tmst)))
        expect.genuine[device.device_id].append((counter, payload))
        if rng.random() < opts.duplicates:
            copy = _rx(phy, rng, -100 - rng.random() * 20, tmst + 7)
            plan.append((GATEWAY_B, dataclasses.replace(copy, freq=plan[-1][1].freq)))
            expect.bad["duplicate"] += 1
        if rng.random() < opts.crc_failures:
            garbled = bytearray(phy)
            garbled[rng.randrange(len(garbled))] ^= 0xFF
            plan.append((GATEWAY_A, _rx(bytes(garbled), rng, -120, tmst + 9, stat=-1)))
            expect.bad["crc_failed"] += 1
        start = first[device.device_id]
        if rng.random() < opts.replays and counter > start:
            old = counter - 1 - rng.randrange(min(5, counter - start))
            plan.append(
                (
                    GATEWAY_A,
                    _rx(
                        build_uplink(device, old, ENCODERS[device.codec], b"\x00replay"), rng, -90, tmst + 11
                    ),
                )
            )
            expect.bad["replay"] += 1
        if rng.random() < opts.unknown_devaddr:
            stranger = SimDevice("stranger", 0x01BADBAD, device.nwkskey, device.appskey, device.codec)
            plan.append((GATEWAY_A, _rx(build_uplink(stranger, i, 1, payload), rng, -110, tmst + 13)))
            expect.bad["unknown_devaddr"] += 1
    return plan, expect


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.inbox.put_nowait(data)


class ForwarderEmulator:
    """One emulated forwarder (its own UDP socket and gateway EUI)."""

    def __init__(self, target: tuple[str, int], gateway_eui: int, version: int = 2) -> None:
        self.target = target
        self.gateway_eui = gateway_eui
        self.version = version
        self._token = random.getrandbits(16)
        self._transport: asyncio.DatagramTransport | None = None
        self._client = _Client()
        self.downlinks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.acks = 0

    async def __aenter__(self) -> ForwarderEmulator:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self._client, remote_addr=self.target
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()

    def _next_token(self) -> int:
        self._token = (self._token + 1) & 0xFFFF
        return self._token

    async def send_raw(self, data: bytes) -> None:
        """Send any datagram (for malformed-input tests)."""
        assert self._transport is not None
        self._transport.sendto(data)

    async def _next_message(self) -> tuple[int, gwmp.Identifier]:
        _, token, ident, body = gwmp.parse_downstream(await self._client.inbox.get())
        if ident == gwmp.Identifier.PULL_RESP and body is not None:
            self.downlinks.put_nowait({"token": token, **body})
        return token, ident

    async def _expect_ack(self, token: int, ident: gwmp.Identifier) -> None:
        while (await self._next_message()) != (token, ident):
            pass
        self.acks += 1

    async def push(self, packets: list[gwmp.RxPacket], stat: dict[str, Any] | None = None) -> None:
        """PUSH_DATA, and wait for the PUSH_ACK with the same token (callers set a timeout)."""
        token = self._next_token()
        await self.send_raw(gwmp.build_push_data(self.version, token, self.gateway_eui, packets, stat))
        await self._expect_ack(token, gwmp.Identifier.PUSH_ACK)

    async def pull(self, retry_s: float = 0.5) -> None:
        """PULL_DATA (opens the downlink path), sent again every `retry_s` until a PULL_ACK.

        Like a real forwarder's keep-alive, it copes with a server that is not up yet
        (the demo starts the emulator before the agent); callers set the overall timeout.
        """
        while True:
            token = self._next_token()
            await self.send_raw(gwmp.build_pull_data(self.version, token, self.gateway_eui))
            try:
                async with asyncio.timeout(retry_s):
                    await self._expect_ack(token, gwmp.Identifier.PULL_ACK)
                return
            except TimeoutError:
                continue

    async def next_downlink(self) -> dict[str, Any]:
        """The next PULL_RESP's JSON (and its token), answered with a TX_ACK."""
        while self.downlinks.empty():
            await self._next_message()
        resp = self.downlinks.get_nowait()
        await self.send_raw(gwmp.build_tx_ack(self.version, resp["token"], self.gateway_eui))
        return resp


async def run_scenario(
    target: tuple[str, int],
    plan: list[tuple[int, gwmp.RxPacket]],
    interval_s: float = 0.0,
    *,
    connect_s: float = 5.0,
    strict: bool = True,
) -> int:
    """Send a planned scenario through two forwarders, each packet acknowledged before the next.

    Waits up to `connect_s` for the server's first PULL_ACKs. A PUSH_ACK missing for 5 s is a
    TimeoutError when `strict`, else counted and skipped (the demo's agent may restart).
    Returns the number of packets left unacknowledged.
    """
    lost = 0
    async with ForwarderEmulator(target, GATEWAY_A) as a, ForwarderEmulator(target, GATEWAY_B) as b:
        async with asyncio.timeout(connect_s):
            await a.pull()
            await b.pull()
        by_eui = {GATEWAY_A: a, GATEWAY_B: b}
        for eui, packet in plan:
            try:
                async with asyncio.timeout(5):
                    await by_eui[eui].push([packet])
            except TimeoutError:
                if strict:
                    raise
                lost += 1
            if interval_s:
                await asyncio.sleep(interval_s)
    return lost


def main(argv: list[str] | None = None) -> int:
    """Command line: send a scenario to a running gateway."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:1700")
    parser.add_argument("--uplinks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between packets (demo pace)")
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="seconds to wait for the server")
    defaults = ScenarioOptions()
    for switch in ("crc_failures", "duplicates", "replays", "unknown_devaddr"):
        parser.add_argument(
            f"--{switch.replace('_', '-')}", type=float, default=getattr(defaults, switch),
            help=f"probability per genuine uplink (default {getattr(defaults, switch)})",
        )  # fmt: skip
    parser.add_argument("--no-rollover", action="store_true", help="every device starts at FCnt 0")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    options = ScenarioOptions(
        uplinks=args.uplinks, crc_failures=args.crc_failures, duplicates=args.duplicates,
        replays=args.replays, unknown_devaddr=args.unknown_devaddr, rollover=not args.no_rollover,
        seed=args.seed,
    )  # fmt: skip
    plan, expect = plan_scenario(options=options)
    target = (host, int(port))
    lost = asyncio.run(
        run_scenario(target, plan, args.interval, connect_s=args.connect_timeout, strict=False)
    )
    print(f"sent {len(plan)} packets: {args.uplinks} genuine, bad {dict(expect.bad)}, unacknowledged {lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
