"""Hostile datagrams at the GWMP port over real UDP: nothing escapes, junk is counted and logged once."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import forwarder_running
from structlog.testing import capture_logs
from test_lora_forwarder import RecordingSink, devices

from drivers.lora import gwmp
from drivers.lora.forwarder import PacketForwarderServer
from hil.sims.packet_forwarder import ForwarderEmulator

EUI = 0x0102030405060708
HEADER = bytes([2, 0x12, 0x34])


def upstream(ident: gwmp.Identifier, body: bytes) -> bytes:
    return HEADER + bytes([ident]) + EUI.to_bytes(8, "big") + body


async def test_nested_json_and_junk_tx_acks_neither_escape_nor_flood_the_log() -> None:
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
    sink = RecordingSink()
    server = PacketForwarderServer("127.0.0.1", 0, devices())
    with capture_logs() as logs:
        async with forwarder_running(server, sink) as bound, ForwarderEmulator(bound, EUI) as fw:
            nested = b"[" * 5_000 + b"]" * 5_000  # RecursionError in json.loads before
            for _ in range(50):
                await fw.send_raw(upstream(gwmp.Identifier.PUSH_DATA, b'{"rxpk":' + nested + b"}"))
                await fw.send_raw(upstream(gwmp.Identifier.TX_ACK, b'{"txpk_ack":' + nested + b"}"))
                await fw.send_raw(upstream(gwmp.Identifier.TX_ACK, b""))  # for no downlink of ours
                await asyncio.sleep(0.002)  # no more than the loopback socket's buffer holds
            async with asyncio.timeout(5):
                await fw.push([], stat={"rxnb": 1})  # still served: acknowledged
                while server.statistics().datagrams < 151:
                    await asyncio.sleep(0.01)
            stats = server.statistics()
    assert loop_errors == []  # no exception reached the event loop
    assert (stats.malformed_datagrams, stats.tx_ack_junk, stats.handler_errors) == (50, 50, 0)
    assert stats.tx_ack_failed == 0  # junk is not a refused downlink
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert sorted(e["kind"] for e in warnings) == [
        "malformed_push_data",
        "tx_ack_malformed",
        "tx_ack_unknown_token",
    ]  # one line per kind of junk, the 147 repeats at DEBUG
    assert sum(e["log_level"] == "debug" and e["event"] == "lorawan.junk" for e in logs) == 147
