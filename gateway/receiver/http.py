"""The receiver's HTTPS endpoint: `POST /gateways/<gateway id>/batches`, one signed batch per request.

The request body is the COSE_Sign1 batch exactly as the gateway's outbox holds it (Content-Type
`application/cose; cose-type="cose-sign1"`, `gateway.wire.MEDIA_TYPE`). The status tells the gateway
what to do with it (docs/wire-format.md, 6.1):

- 200: stored, or already stored (a resend): the gateway deletes it from its outbox
- 403: the signing key is not registered here (yet), or the URL names another gateway: the gateway
  keeps the batch and retries (someone has to fix a registration or a config)
- 415: a wire format version this receiver does not know yet: kept and retried (until an upgrade)
- 409: this seq is already stored with other content: the gateway gives the batch up, as a gap
- 422: the batch does not verify or decode: the gateway gives it up, as a gap
- 503: the receiver cannot store right now: the gateway retries
"""

from __future__ import annotations

import asyncio
import ssl

import structlog
from aiohttp import web

from gateway.errors import StorageError, UnknownKey, UnsupportedVersion, UplinkError
from gateway.receiver.service import Receiver, Rejection
from gateway.receiver.storage import Outcome
from gateway.wire.body import MAX_BODY_BYTES

log = structlog.get_logger(__name__)

#: rejections the gateway should retry, by reason; any other reason is 422 (the bytes are bad)
_STATUS_OF_REJECTION = {UnknownKey.__name__: 403, "topic_mismatch": 403, UnsupportedVersion.__name__: 415}


class BatchEndpoint:
    """Serves `POST /gateways/{gateway_id}/batches` for a Receiver until cancelled."""

    def __init__(
        self, receiver: Receiver, *, host: str, port: int, tls: ssl.SSLContext | None = None
    ) -> None:
        self._receiver = receiver
        self._host, self._port = host, port
        self._tls = tls
        self._app = web.Application(client_max_size=MAX_BODY_BYTES)
        self._app.router.add_post("/gateways/{gateway_id}/batches", self._post)

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
            self._receiver.listening = True
            scheme = "https" if self._tls else "http"
            log.info(
                "receiver listening", url=f"{scheme}://{self._host}:{self._port}/gateways/{{id}}/batches"
            )
            await asyncio.Event().wait()
        finally:
            self._receiver.listening = False
            await runner.cleanup()

    async def _post(self, request: web.Request) -> web.Response:
        gateway_id = request.match_info["gateway_id"]
        blob = await request.read()
        topic = f"gateways/{gateway_id}/batches"
        try:
            verdict = await asyncio.to_thread(self._receiver.receive, topic, blob)
        except StorageError as exc:
            return web.json_response({"error": "storage", "detail": str(exc)}, status=503)
        if isinstance(verdict, Rejection):
            status = _STATUS_OF_REJECTION.get(verdict.reason, 422)
            return web.json_response({"error": verdict.reason, "detail": verdict.detail}, status=status)
        if verdict is Outcome.REPLAY:
            detail = "this seq is stored with other content"
            return web.json_response({"error": "replay", "detail": detail}, status=409)
        return web.json_response({"outcome": verdict.value})
