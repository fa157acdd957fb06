"""`gateway lorawan ...`: decode one frame by hand, watch live uplinks at the antenna."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from drivers.lora.gwmp import RxPacket
from drivers.lora.lorawan.crypto import SessionKey
from drivers.lora.lorawan.inspect import describe_frame
from drivers.lora.lorawan.phypayload import MType, parse_data_frame, parse_mhdr
from gateway import control
from gateway.cli.configfile import config_option, load_or_exit
from gateway.logs import configure_logging
from kernel.errors import ConfigError, GatewayError, ProtocolError


@click.group(name="lorawan")
def group() -> None:
    """LoRaWAN tools: decode a frame, watch the packet forwarder."""


def _fail(reason: str) -> NoReturn:
    click.echo(f"error: {reason}", err=True)
    sys.exit(2)


def _key(text: str | None, name: str) -> SessionKey | None:
    if text is None:
        return None
    try:
        return SessionKey.from_hex(text)
    except ConfigError:
        _fail(f"{name} must be 32 hex digits")
    return None  # pragma: no cover - _fail exits


@group.command("decode")
@click.argument("phypayload_hex")
@click.option("--nwkskey", help="NwkSKey (hex): checks the MIC, decrypts FPort 0")
@click.option("--appskey", help="AppSKey (hex): decrypts FRMPayload")
@click.option("--appkey", help="AppKey (hex): checks a join-request's MIC, decrypts a join-accept")
@click.option("--fcnt-hint", type=click.IntRange(0, 0xFFFFFFFF), help="last known 32-bit FCnt of the device")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def decode_command(
    phypayload_hex: str,
    nwkskey: str | None,
    appskey: str | None,
    appkey: str | None,
    fcnt_hint: int | None,
    as_json: bool,
) -> None:
    """Decode one PHYPayload (hex). Exit 0 even when the MIC is wrong (mic_valid says so)."""
    try:
        phy = bytes.fromhex(phypayload_hex.replace(" ", ""))
    except ValueError:
        _fail("PHYPAYLOAD_HEX is not hex")
    keys = {
        "nwkskey": _key(nwkskey, "--nwkskey"),
        "appskey": _key(appskey, "--appskey"),
        "app_key": _key(appkey, "--appkey"),
    }
    try:
        fields = describe_frame(phy, fcnt_hint=fcnt_hint, **keys)
    except ProtocolError as exc:
        _fail(f"malformed frame: {exc}")
    if as_json:
        click.echo(json.dumps(fields))
        return
    for name, value in fields.items():
        click.echo(f"{name:>10}: {value}")


def _packet_line(gateway_eui: int, rx: RxPacket) -> dict[str, object]:
    line: dict[str, object] = {
        "time": time.strftime("%H:%M:%S"),
        "gateway": f"{gateway_eui:016x}",
        "freq": rx.freq,
        "datr": rx.datr,
        "rssi": rx.rssi,
        "snr": rx.lsnr,
        "crc": {1: "ok", -1: "bad", 0: "none"}.get(rx.stat, str(rx.stat)),
        "size": len(rx.data),
    }
    with contextlib.suppress(ProtocolError):
        mtype = parse_mhdr(rx.data)
        line["mtype"] = mtype.name
        if mtype.is_data:
            frame = parse_data_frame(rx.data)
            line.update(devaddr=f"{frame.devaddr:08x}", fcnt=frame.fcnt, fport=frame.fport)
        elif mtype == MType.JoinRequest and len(rx.data) == 23:
            line["dev_eui"] = rx.data[9:17][::-1].hex()
    return line


def _show(line: dict[str, object], rx: RxPacket, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(line))
        return
    who = line.get("devaddr") or line.get("dev_eui") or "-"
    click.echo(
        f"{line['time']} gw {line['gateway']} {rx.freq:.3f} MHz {rx.datr} rssi {rx.rssi:.0f} dBm "
        f"snr {rx.lsnr if rx.lsnr is not None else '-'} dB crc {line['crc']} "
        f"{line.get('mtype', '?')} {who} fcnt {line.get('fcnt', '-')}"
    )


class _NoSink:
    """`listen` decodes nothing: readings and events are dropped."""

    def reading(self, reading: object) -> None:
        pass

    def event(self, event: object) -> None:
        pass


async def _listen(host: str, port: int, as_json: bool, count: int | None) -> None:
    """Serve until cancelled (Ctrl-C) or until `count` packets were shown."""
    from drivers.lora.forwarder import PacketForwarderServer

    enough = asyncio.Event()
    shown = 0

    def on_packet(gateway_eui: int, rx: RxPacket) -> None:
        nonlocal shown
        if count is not None and shown >= count:
            return
        _show(_packet_line(gateway_eui, rx), rx, as_json)
        shown += 1
        if shown == count:
            enough.set()

    server = PacketForwarderServer(host, port, [], on_packet=on_packet)
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(server.run(_NoSink()))
        bound = tasks.create_task(server.listening.wait())
        await asyncio.wait(
            (bound, serving), return_when=asyncio.FIRST_COMPLETED
        )  # a bind failure ends serving
        if server.bound is not None and not as_json:
            bound_host, bound_port = server.bound
            click.echo(
                f"listening for packet forwarders on {bound_host}:{bound_port} (Ctrl-C stops)", err=True
            )
        await enough.wait()
        serving.cancel()


@group.command("listen")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=1700, show_default=True, help="UDP port the packet forwarder sends to")
@click.option("--count", type=click.IntRange(min=1), help="stop after this many packets")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per packet")
def listen_command(host: str, port: int, count: int | None, as_json: bool) -> None:
    """Show every packet the forwarder hears, with RSSI/SNR (for antenna checks). Ctrl-C stops.

    The agent's GWMP server must not hold the port meanwhile (stop the agent, or point the
    forwarder at another port); with the agent running, `gateway lorawan uplinks` shows what it heard.
    """
    configure_logging("warning", stream=sys.stderr)  # stdout carries only the packet lines
    try:
        asyncio.run(_listen(host, port, as_json, count))
    except KeyboardInterrupt:
        pass
    except ExceptionGroup as group_:  # from the TaskGroup: a socket that cannot be bound
        failed = group_.subgroup(GatewayError)
        if failed is None:
            raise
        _fail(f"{failed.exceptions[0]} (if the agent runs, it holds the port: gateway lorawan uplinks)")


@group.command("uplinks")
@click.argument("device", required=False)
@config_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object per uplink")
def uplinks_command(device: str | None, config_file: Path | None, as_json: bool) -> None:
    """The last uplinks the running agent heard from DEVICE (or every device): FCnt, port, RSSI, SNR."""
    config = load_or_exit(config_file)
    arguments: dict[str, Any] = {} if device is None else {"device": device}
    try:
        socket = config.state_dir / "control.sock"
        answer = asyncio.run(control.request(socket, "lora_uplinks", 2.0, **arguments))
    except GatewayError as exc:
        _fail(str(exc))
    for name, uplinks in sorted(answer["uplinks"].items()):
        for uplink in uplinks:
            if as_json:
                click.echo(json.dumps({"device": name, **uplink}))
                continue
            when = time.strftime("%H:%M:%S", time.gmtime(uplink["received_ms"] / 1000))
            snr = "-" if uplink["snr"] is None else f"{uplink['snr']:g}"
            click.echo(
                f"{when}  {name:<18} fcnt {uplink['fcnt']:>6}  port {uplink['fport']}  "
                f"rssi {uplink['rssi']:g} dBm  snr {snr} dB  x{uplink['copies']}  {uplink['payload']}"
            )
