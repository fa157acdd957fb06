"""The receiver's HTTPS transport: `POST /gateways/<gateway id>/batches`, one signed batch per request.

The request body is the COSE_Sign1 batch exactly as the gateway's outbox holds it (Content-Type
`application/cose; cose-type="cose-sign1"`). The answer comes after the transaction holding the batch
committed; its status is `verdict.HTTP_STATUS` (docs/wire-format.md, 6.1). Bodies are read only
within a byte budget shared by all requests, so concurrent large bodies wait instead of piling up.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import structlog
from aiohttp import web

from gateway.receiver.core import Arrival
from gateway.receiver.envelope import MAX_ENVELOPE_BYTES
from gateway.receiver.intake import Committer
from gateway.receiver.verdict import HTTP_STATUS, valid_gateway_id
from kernel.errors import StorageError, UplinkError

log = structlog.get_logger(__name__)

#: bytes of request bodies held in memory at once: one largest batch plus change. Ten concurrent
#: 60 MB bodies took 734 MB before this bound; now they are read one after another.
BODY_BUDGET_BYTES = 80 * 1024 * 1024


class ByteBudget:
    """A semaphore counted in bytes (asyncio, fair: first come first served)."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._free = total
        self._changed = asyncio.Condition()

    async def acquire(self, size: int) -> None:
        """Wait until `size` bytes are free and take them."""
        size = min(size, self._total)
        async with self._changed:
            await self._changed.wait_for(lambda: self._free >= size)
            self._free -= size

    async def release(self, size: int) -> None:
        """Give `size` bytes back."""
        async with self._changed:
            self._free += min(size, self._total)
            self._changed.notify_all()


class BatchEndpoint:
    """Serves `POST /gateways/{gateway_id}/batches` until cancelled."""

    def __init__(
        self,
        committer: Committer,
        *,
        host: str,
        port: int,
        clock: Callable[[], int],
        tls: ssl.SSLContext | None = None,
        body_budget: int = BODY_BUDGET_BYTES,
    ) -> None:
        self._committer = committer
        self._host, self._port = host, port
        self._tls = tls
        self._clock = clock
        self._budget = ByteBudget(body_budget)
        self._app = web.Application(client_max_size=MAX_ENVELOPE_BYTES)
        self._app.router.add_post("/gateways/{gateway_id}/batches", self._post)
        self.listening = False

    async def run(self) -> None:
        """Listen until cancelled."""
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._tls)
            try:
                await site.start()
            except OSError as exc:
                raise UplinkError(f"cannot listen on {self._host}:{self._port}: {exc}") from exc
            self.listening = True
            scheme = "https" if self._tls else "http"
            url = f"{scheme}://{self._host}:{self._port}/gateways/{{id}}/batches"
            log.info("receiver listening", url=url)
            await asyncio.Event().wait()
        finally:
            self.listening = False
            await runner.cleanup()

    async def _post(self, request: web.Request) -> web.Response:
        gateway_id = request.match_info["gateway_id"]
        if not valid_gateway_id(gateway_id):
            detail = "a gateway id is 1 to 64 of A-Z a-z 0-9 . _ -"
            return web.json_response({"error": "bad_gateway_id", "detail": detail}, status=400)
        size = request.content_length
        if size is None:
            return web.json_response({"error": "length_required"}, status=411)
        if size > MAX_ENVELOPE_BYTES:
            return web.json_response({"error": "too_large", "limit": MAX_ENVELOPE_BYTES}, status=413)
        await self._budget.acquire(size)
        try:
            blob = await _body(request, size)
            if blob is None:
                return web.json_response({"error": "length_mismatch"}, status=400)
            verdict = await self._committer.judge(Arrival(blob, gateway_id, self._clock()))
            del blob  # not kept past the verdict
        except StorageError as exc:
            return web.json_response({"error": "storage", "detail": str(exc)}, status=503)
        finally:
            await self._budget.release(size)
        status = HTTP_STATUS[verdict.result]
        if status >= 300:
            return web.json_response({"error": verdict.name, "detail": verdict.detail}, status=status)
        answer = {"outcome": "quarantined" if status == 202 else verdict.name}
        if status == 202:
            answer["reason"] = verdict.name
        return web.json_response(answer, status=status)


async def _body(request: web.Request, size: int) -> bytes | None:
    """Exactly `size` bytes of body into one buffer, or None when the body is longer or shorter.

    Not `request.read()`: it keeps the body on the request object, which a kept-alive connection
    holds on to; ten concurrent 60 MB bodies over kept-alive connections then reached 749 MB.
    """
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    async for chunk in request.content.iter_any():
        if filled + len(chunk) > size:
            return None
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    view.release()
    return bytes(buffer) if filled == size else None
