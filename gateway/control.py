"""The agent's local control socket: versioned JSON-line requests from `gateway status|watch|flush|...`.

The protocol is described in docs/control.md. A request is one JSON object on one line; the answer is
one JSON object on one line, or, for a stream, a header line followed by one line per item until the
client closes. Requests are bounded: a line longer than MAX_REQUEST_BYTES, a connection beyond
MAX_CONNECTIONS or a request beyond its time limit gets a one-line error, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from kernel.errors import GatewayError

log = structlog.get_logger(__name__)

#: version of the request/response lines (docs/control.md)
PROTOCOL_VERSION = 1
#: AF_UNIX paths are limited to 108 bytes on Linux
MAX_SOCKET_PATH = 100
#: the longest request line: the largest real request (a filtered `readings`) is under 1 KiB
MAX_REQUEST_BYTES = 64 * 1024
#: technicians and the metrics timer together; more would only pile up on the event loop
MAX_CONNECTIONS = 16
#: the socket's mode: owner and the `gateway` group (technicians are added to it)
SOCKET_MODE = 0o660
SOCKET_GROUP = "gateway"

Answer = dict[str, Any]
#: a request handler: arguments in, one answer out (or raises RequestFailed)
Handler = Callable[[Mapping[str, Any]], Awaitable[Answer]]
#: a stream handler: arguments checked (or RequestFailed), then items until the client goes away
StreamHandler = Callable[[Mapping[str, Any]], Awaitable[AsyncIterator[Answer]]]


class RequestFailed(GatewayError):
    """A request the agent understood but could not carry out; `code` says which way (docs/control.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def to_jsonable(value: Any) -> Any:
    """Statistics dataclasses (nested, frozen) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    return value


def _line(payload: Answer) -> bytes:
    return json.dumps(to_jsonable({"v": PROTOCOL_VERSION, **payload})).encode() + b"\n"


def error_line(code: str, message: str) -> bytes:
    """One error answer."""
    return _line({"ok": False, "error": {"code": code, "message": message}})


def parse_request(line: bytes) -> tuple[str, Mapping[str, Any]]:
    """(request name, arguments) of one request line; RequestFailed('bad_request') otherwise."""
    text = line.decode("utf-8", "replace").strip()
    if text == "status":  # the unversioned request of the first agents (metrics timers in the field)
        return "status", {}
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise RequestFailed("bad_request", "a request is one JSON object on one line") from None
    if not isinstance(message, dict) or not isinstance(message.get("request"), str):
        raise RequestFailed("bad_request", 'a request needs "request": NAME')
    if message.get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise RequestFailed("unsupported_version", f"this agent speaks version {PROTOCOL_VERSION}")
    return message["request"], message


class ControlServer:
    """Serves the requests registered with `handle` and `stream` on a Unix socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handlers: dict[str, Handler] = {}
        self._streams: dict[str, StreamHandler] = {}
        self._connections = 0
        self.refused_connections = 0

    def handle(self, name: str, handler: Handler) -> None:
        """Answer request `name` with one line from `handler`."""
        self._handlers[name] = handler

    def stream(self, name: str, handler: StreamHandler) -> None:
        """Answer request `name` with the items of `handler` until the client closes."""
        self._streams[name] = handler

    async def run(self) -> None:
        """Serve until cancelled; removes the socket file on the way out."""
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            log.warning("control socket path too long, status is unavailable", path=str(self.path))
            await asyncio.Event().wait()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES)
        _open_to_group(self.path)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        try:
            if self._connections > MAX_CONNECTIONS:
                self.refused_connections += 1
                writer.write(error_line("busy", f"more than {MAX_CONNECTIONS} connections; try again"))
                await writer.drain()
                return
            while line := await _request_line(reader, writer):
                if not await self._answer(line, reader, writer):
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            self._connections -= 1
            writer.close()

    async def _answer(self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done (after a stream)."""
        try:
            name, arguments = parse_request(line)
            if name in self._streams:
                items = await self._streams[name](arguments)
                await _send_stream(items, reader, writer)
                return False
            handler = self._handlers.get(name)
            if handler is None:
                known = ", ".join(sorted([*self._handlers, *self._streams]))
                raise RequestFailed("unknown_request", f"unknown request {name!r}; known: {known}")
            reply = {"ok": True, "result": await handler(arguments)}
            if line.strip() == b"status":
                writer.write(json.dumps(to_jsonable(reply["result"])).encode() + b"\n")
            else:
                writer.write(_line(reply))
        except RequestFailed as exc:
            writer.write(error_line(exc.code, str(exc)))
        except GatewayError as exc:  # a part of the agent failed (the buffer, a bus): say so, serve on
            log.warning("control request failed", error=str(exc))
            writer.write(error_line("failed", str(exc)))
        await writer.drain()
        return True


async def _send_stream(
    items: AsyncIterator[Answer], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The header, the items, the end line; stops as soon as the client closes (even with no items due)."""
    writer.write(_line({"ok": True, "stream": True}))
    await writer.drain()

    async def send() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            async for item in items:
                writer.write(_line(item))
                await writer.drain()
            writer.write(_line({"end": True}))
            await writer.drain()

    async with asyncio.TaskGroup() as tasks:
        sending = tasks.create_task(send())
        closed = tasks.create_task(_until_closed(reader))
        await asyncio.wait((sending, closed), return_when=asyncio.FIRST_COMPLETED)
        sending.cancel()
        closed.cancel()


async def _until_closed(reader: asyncio.StreamReader) -> None:
    """Returns when the client closes its end (what it sends during a stream is ignored)."""
    with contextlib.suppress(ValueError, asyncio.LimitOverrunError, ConnectionError, OSError):
        while await reader.read(4096):
            pass


async def _request_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The next request line; b'' at the end or after an over-long line (answered with an error)."""
    try:
        return await reader.readline()
    except (ValueError, asyncio.LimitOverrunError):  # the line passed MAX_REQUEST_BYTES
        log.warning("control request too long, connection closed", limit=MAX_REQUEST_BYTES)
        writer.write(error_line("too_long", f"a request line has at most {MAX_REQUEST_BYTES} bytes"))
        await writer.drain()
        return b""


def _open_to_group(path: Path) -> None:
    """0660, and the `gateway` group when the agent may give it (it is a member, or root)."""
    os.chmod(path, SOCKET_MODE)
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(path, -1, grp.getgrnam(SOCKET_GROUP).gr_gid)


class AgentUnreachable(GatewayError):
    """No agent answers on the control socket (with what a technician can do about it)."""

    def __init__(self, message: str, *, absent: bool = False) -> None:
        super().__init__(message)
        #: nobody listens at all (no socket, or nobody accepts): the agent is not running
        self.absent = absent


def unreachable_message(path: Path, exc: BaseException) -> str:
    """Why nobody answers at `path`, and what to do."""
    if isinstance(exc, PermissionError):
        return (
            f"no permission to use the agent's control socket {path}: join the '{SOCKET_GROUP}' group "
            f"(sudo usermod -aG {SOCKET_GROUP} $USER, then log in again) or run the command with sudo"
        )
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return f"no agent answers at {path}: is it running? (systemctl status gateway)"
    if isinstance(exc, TimeoutError):
        return f"the agent at {path} did not answer in time"
    return f"no agent answers at {path}: {exc}"


@contextlib.asynccontextmanager
async def connect(
    path: Path, timeout_s: float
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A connection to the agent's socket; AgentUnreachable with advice when there is none."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=16 * 1024 * 1024)
    except (OSError, TimeoutError) as exc:
        absent = isinstance(exc, FileNotFoundError | ConnectionRefusedError)
        raise AgentUnreachable(unreachable_message(path, exc), absent=absent) from None
    try:
        yield reader, writer
    finally:
        writer.close()


def _request_bytes(name: str, arguments: Mapping[str, Any]) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "request": name, **arguments}).encode() + b"\n"


def _answer_of(line: bytes, path: Path) -> Answer:
    if not line:
        raise AgentUnreachable(f"the agent at {path} closed the connection without answering")
    answer: Answer = json.loads(line)
    if not answer.get("ok"):
        error = answer.get("error") or {}
        raise RequestFailed(str(error.get("code", "failed")), str(error.get("message", answer)))
    return answer


async def request(path: Path, name: str, timeout_s: float = 2.0, **arguments: Any) -> Answer:
    """Send one request and return its result; AgentUnreachable or RequestFailed otherwise."""
    async with connect(path, timeout_s) as (reader, writer):
        writer.write(_request_bytes(name, arguments))
        try:
            async with asyncio.timeout(timeout_s):
                await writer.drain()
                line = await reader.readline()
        except (OSError, TimeoutError) as exc:
            raise AgentUnreachable(unreachable_message(path, exc)) from None
    result: Answer = _answer_of(line, path)["result"]
    return result


async def subscribe(path: Path, name: str, timeout_s: float = 2.0, **arguments: Any) -> AsyncIterator[Answer]:
    """The items of a stream request, until the agent ends it (or the caller stops iterating)."""
    async with connect(path, timeout_s) as (reader, writer):
        writer.write(_request_bytes(name, arguments))
        try:
            async with asyncio.timeout(timeout_s):
                await writer.drain()
                _answer_of(await reader.readline(), path)
        except (OSError, TimeoutError) as exc:
            raise AgentUnreachable(unreachable_message(path, exc)) from None
        while line := await reader.readline():
            item: Answer = json.loads(line)
            if item.get("end"):
                return
            yield item
    raise AgentUnreachable(f"the agent at {path} ended the stream: did it stop?")


async def query_status(path: Path, timeout_s: float = 2.0) -> dict[str, Any]:
    """Ask a running agent for its status; GatewayError (AgentUnreachable) when nobody answers."""
    return await request(path, "status", timeout_s)
