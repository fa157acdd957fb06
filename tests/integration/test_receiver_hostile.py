"""Hostile input against `gateway receiver --listen` as a child process: cheap refusals, bounded memory.

Before the envelope check, the item bound and the body budget, these inputs drove the receiver to
2.4 GB (16 MB of tag 18 over empty maps), 1.3 GB (a signed batch under 1 KB) and 734 MB (ten
concurrent 60 MB bodies). The bound asserted here is a resource bound (peak RSS), not a timing.
"""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import aiohttp
import cbor2
import pytest
import zstandard
from conftest import Processes, read_json, wait_until

from gateway import wire
from hil.broker import free_port
from hil.fleet import SimulatedGateway, write_public_keys

PEAK_RSS_LIMIT_KB = 400 * 1024
MAPS = 16 * 1024 * 1024


def peak_rss_kb(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def empty_maps_under_tag_18() -> bytes:
    """16 MB: tag 18 over an array of 16 M empty maps."""
    return b"\xd2\x9a" + MAPS.to_bytes(4, "big") + b"\xa0" * MAPS


def hostile_signed_batch(gw: SimulatedGateway) -> bytes:
    """A validly signed batch of under 1 KB whose body inflates to 16 M empty maps (events field)."""
    fields = {0: 2, 1: gw.gateway_id, 2: 0, 3: 0, 4: [], 9: gw.epoch}
    head = b"\xa7" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in fields.items())
    body = head + b"\x08\x9a" + MAPS.to_bytes(4, "big") + b"\xa0" * MAPS
    blob = wire.sign(zstandard.ZstdCompressor(level=19).compress(body), gw.key, gw.kid)
    assert len(blob) < 4096
    return blob


async def post_all(port: int, cases: list[tuple[str, bytes]]) -> list[int]:
    async with aiohttp.ClientSession() as session:

        async def post(path: str, body: bytes) -> int:
            async with session.post(f"http://127.0.0.1:{port}{path}", data=io.BytesIO(body)) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(post(p, b) for p, b in cases)))


@pytest.mark.slow
def test_hostile_bodies_are_refused_and_peak_memory_stays_under_400_mb(
    tmp_path: Path, processes: Processes
) -> None:
    gw = SimulatedGateway("gw-1")
    keys = write_public_keys(tmp_path / "keys", [gw])
    port, stats = free_port(), tmp_path / "stats.json"
    child = processes.start(
        "receiver", "-m", "gateway", "receiver", "--listen", f"127.0.0.1:{port}", "--keys", str(keys),
        "--db", str(tmp_path / "received.db"), "--stats-file", str(stats), "--log-level", "error",
    )  # fmt: skip
    wait_until(lambda: read_json(stats).get("listening") is True, 30, "the endpoint")
    path = f"/gateways/{gw.gateway_id}/batches"
    assert asyncio.run(post_all(port, [(path, empty_maps_under_tag_18())])) == [422]
    assert asyncio.run(post_all(port, [(path, hostile_signed_batch(gw))])) == [422]
    junk = b"\xd2\x84" + os.urandom(60 * 1024 * 1024)
    assert asyncio.run(post_all(port, [(path, junk)] * 10)) == [422] * 10
    assert asyncio.run(post_all(port, [("/gateways/gw-b%2Fx/batches", gw.batch())])) == [400]
    assert asyncio.run(post_all(port, [(path, gw.batch())])) == [200]  # still serving
    peak = peak_rss_kb(child.pid)
    assert peak < PEAK_RSS_LIMIT_KB, f"peak RSS {peak // 1024} MB"
    print(f"receiver peak RSS {peak // 1024} MB")
