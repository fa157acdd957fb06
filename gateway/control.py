"""The agent's local control socket: `gateway status` asks it what the agent is doing right now."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import GatewayError

log = structlog.get_logger(__name__)

#: AF_UNIX paths are limited to 108 bytes on Linux
MAX_SOCKET_PATH = 100


def to_jsonable(value: Any) -> Any:
    """Statistics dataclasses (nested, frozen) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    return value


class ControlServer:
    """Answers one JSON line per request line: `status` (the only command so far)."""

    def __init__(self, path: Path, status: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._status = status

    async def run(self) -> None:
        """Serve until cancelled; removes the socket file on the way out."""
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            log.warning("control socket path too long, status is unavailable", path=str(self.path))
            await asyncio.Event().wait()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                command = line.decode("utf-8", "replace").strip()
                if command == "status":
                    reply: dict[str, Any] = self._status()
                else:
                    reply = {"error": f"unknown command {command!r}"}
                writer.write(json.dumps(to_jsonable(reply)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def query_status(path: Path, timeout_s: float = 2.0) -> dict[str, Any]:
    """Ask a running agent for its status; GatewayError when nobody answers."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(b"status\n")
            await writer.drain()
            line = await reader.readline()
            writer.close()
    except (OSError, TimeoutError) as exc:
        raise GatewayError(f"no agent answers at {path}: {exc}") from None
    result: dict[str, Any] = json.loads(line)
    return result
