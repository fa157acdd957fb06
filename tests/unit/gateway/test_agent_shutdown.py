"""The agent's ordered stop, in process: drivers first, then commit, seal and send, then the uplink.

The real Agent, Store, Batcher and Delivery; a fake driver and a loopback uplink (uplink_fakes.py) in
place of the ports and the broker, so the order is seen in a second, without a subprocess.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from uplink_fakes import LoopbackUplink

from buffer import Store
from drivers.base import Driver, Sink
from gateway import signing_key
from gateway.agent import Agent
from gateway.config import GatewayConfig, parse_config
from kernel.model import Reading
from kernel.wallclock import now_ms


class CountingDriver:
    """Emits one reading every 5 ms until cancelled; notes its stop in the shared journal."""

    name = "counting"

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.emitted = 0

    async def run(self, sink: Sink) -> None:
        try:
            while True:
                # stamped now: a reading's budget counts from its timestamp, and the budget is an hour
                sink.reading(Reading("weather-1", "air_temperature", now_ms(), 20.0, "Cel"))
                self.emitted += 1
                await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            self.journal.append(f"driver stopped after {self.emitted}")
            raise

    def statistics(self) -> dict[str, int]:
        return {"emitted": self.emitted}


def config(tmp_path: Path) -> GatewayConfig:
    private, _public = signing_key.generate_keypair(tmp_path / "keys")
    return parse_config(
        {
            "gateway_id": "gw-test",
            "key_file": str(private),
            "state_dir": str(tmp_path / "state"),
            "clock": {"check": "off"},
            # a budget far beyond the test: only the stop seals, so the order below is the stop's own
            "batching": {"max_delay_s": 3600},
            "buffer": {"commit_interval_s": 0.05},
            "sensors": [
                {
                    "id": "weather-1",
                    "driver": "serial",
                    "serial": {"port": "/dev/ttyNONE", "protocol": "nmea"},
                }
            ],
        }
    )


async def test_a_stop_cancels_the_drivers_then_commits_seals_and_sends_everything_then_the_uplink(
    tmp_path: Path,
) -> None:
    journal: list[str] = []
    driver = CountingDriver(journal)
    uplinks: list[LoopbackUplink] = []

    def open_uplink(store: Store, _config: Any, *, gateway_id: str, sealed: asyncio.Event) -> LoopbackUplink:
        uplinks.append(LoopbackUplink(store, sealed=sealed, journal=journal))
        return uplinks[0]

    def drivers(_config: GatewayConfig) -> list[Driver]:
        return [driver]

    agent = Agent(config(tmp_path), drivers=drivers, uplink=open_uplink)
    running = asyncio.create_task(agent.run())
    async with asyncio.timeout(10):
        while driver.emitted < 40 or not uplinks or uplinks[0].state != "connected":
            await asyncio.sleep(0.01)
        agent.stop()
        await running
    [uplink] = uplinks
    # the order: the drivers stop, the last batch is sealed and sent while the link is up, then the link stops
    stopped = journal.index(f"driver stopped after {driver.emitted}")
    assert journal.count("uplink stopped") == 1 and journal[-1] == "uplink stopped"
    assert journal[stopped + 1 : -1] != []
    assert all(line.startswith("sent ") for line in journal[stopped + 1 : -1])
    # every reading the driver emitted before it stopped was committed, sealed and delivered
    assert sum(entry.readings for entry in uplink.sent) == driver.emitted
    with Store.open(tmp_path / "state" / "buffer.db") as store:
        assert store.undelivered(limit=10) == []
        assert store.pending(upto_ts_ms=None) is None
