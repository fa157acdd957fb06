"""A P2P modem driver on a real pty through the serial helper's transport (SerialLine)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.base import DriverSpec
from drivers.lora.config import ModemSection
from drivers.lora.modem.driver import ModemDriver
from hil.recording import RecordingSink
from hil.sims.lora_modem import ModemEmulator, serve_on_pty
from hil.sims.lora_payloads import dl_mbx
from hil.sims.pty_port import PtyPort


@pytest.mark.parametrize("kind", ["rak3172", "rn2483"])
async def test_modem_on_pty_delivers_decoded_readings(tmp_path: Path, kind: str) -> None:
    port = PtyPort(tmp_path / "ttyLORA")
    port.open()
    modem = ModemEmulator(kind)
    section = ModemSection(modem=kind, port=str(port.link), codec="dl_mbx")  # type: ignore[arg-type]
    driver = ModemDriver.from_spec(DriverSpec("p2p-pty", section))
    sink = RecordingSink()
    server = asyncio.create_task(serve_on_pty(port, modem))
    task = asyncio.create_task(driver.run(sink))
    try:
        async with asyncio.timeout(10):
            while not modem.receiving:
                await asyncio.sleep(0.02)
            await port.write(modem.packet(dl_mbx(2345)))
            while not any(r.quantity == "distance" for r in sink.readings):
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        server.cancel()
        await asyncio.gather(task, server, return_exceptions=True)
        port.close()
    assert [r.value for r in sink.readings if r.quantity == "distance"] == [2345.0]
    assert {r.sensor for r in sink.readings} == {"p2p-pty"}
