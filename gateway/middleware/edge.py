"""The edge of the app, one layer for what every request needs first:

- a request id (the client's `x-request-id` when sane, else minted) in the scope and on every answer;
- every failure rendered as an OpenAI-shaped JSON error with the right status (a stack trace or a
  secret never reaches the client; unexpected faults are logged with the request id);
- the hot OpenAI paths dispatched by one dict lookup, straight to their endpoint, instead of walking
  the route list; everything else goes on to the Starlette router.

It is one layer rather than three so each request pays one `send` wrapper and one frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from gateway.errors import GatewayError, InternalError
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.middleware.request_id import REQUEST_ID, request_id_from
from gateway.ops.access_log import AccessLog

# --- observability: where the OpenAI endpoints leave the request's context for the access log ---
CONTEXT = "gateway.ctx"

log = get_logger("errors")

ASGIApp = Any
# An error's status, body and extra headers in a client dialect's shape.
ErrorRenderer = Callable[[GatewayError], tuple[int, bytes, dict[str, str]]]


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, fast_paths: Mapping[str, ASGIApp] | None = None,
                 access_log: AccessLog | None = None, metrics: Metrics | None = None,
                 renderers: Mapping[str, ErrorRenderer] | None = None) -> None:
        self.app = app
        self.fast_paths = dict(fast_paths or {})
        # Paths whose clients speak another dialect than OpenAI's: their errors are rendered in it.
        self.renderers = dict(renderers or {})
        self.access_log = access_log or AccessLog(enabled=False)  # --- observability ---
        self.metrics = metrics
        self.in_flight = metrics.child(metrics.in_flight) if metrics is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        scope[REQUEST_ID] = request_id
        id_header = (b"x-request-id", request_id.encode("ascii"))
        started = False
        status = 0

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        endpoint = self.fast_paths.get(scope["path"])
        began = time.perf_counter()
        in_flight = self.in_flight if endpoint is not None else None  # --- observability ---
        if in_flight is not None:
            in_flight.inc()
        error: GatewayError | None = None
        try:
            if endpoint is not None:
                await endpoint(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except GatewayError as exc:
            error = exc
            if not started:
                await send_error(send, exc, request_id, self.renderers.get(scope["path"]))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unhandled error", extra={"fields": {"request_id": request_id, "path": scope["path"]}})
            error = InternalError(f"The gateway failed to handle the request (request id {request_id}).")
            if not started:
                await send_error(send, error, request_id, self.renderers.get(scope["path"]))
        finally:
            if in_flight is not None:
                in_flight.dec()
        if endpoint is not None:
            self._observed(scope, request_id, began, status or (error.http_status if error else 500), error)

    # --- observability ---
    def _observed(self, scope: dict[str, Any], request_id: str, began: float, status: int,
                  error: GatewayError | None) -> None:
        """After an OpenAI request: count what the pipeline never saw, write the access line."""
        ctx = scope.get(CONTEXT)
        if error is not None and self.metrics is not None and (ctx is None or ctx.status < 400):
            # Refused before the pipeline observed it (bad body, bad key, unknown alias): counted
            # without an alias, whose value came from the client.
            self.metrics.count_request("", "", "", error.http_status)
        if self.access_log.active():
            self.access_log.write(request_id, scope["path"], status, began, ctx,
                                  error.error_type if error is not None else None)
    # --- end observability ---


async def send_error(send: Any, error: GatewayError, request_id: str, render: ErrorRenderer | None = None) -> None:
    status, body, extra = render(error) if render is not None else (error.http_status, error.to_body(), error.headers)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"x-request-id", request_id.encode("latin-1"))]
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    if render is not None:  # Anthropic's clients read the request id from `request-id`
        headers.append((b"request-id", request_id.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
