"""The edge of the app, one layer for what every request needs first:

- a request id (the client's `x-request-id` when sane, else minted) in the scope and on every answer;
- every failure rendered as an OpenAI-shaped JSON error with the right status (a stack trace or a
  secret never reaches the client; unexpected faults are logged with the request id);
- the hot OpenAI paths dispatched by one dict lookup, straight to their endpoint, instead of walking
  the route list (Azure OpenAI's deployment paths by their prefix); everything else goes on to the
  Starlette router;
- failed authentications counted per client address, and an address past its rate refused (429);
- the opt-in CORS headers, and CORS preflights answered.

It is one layer rather than three so each request pays one `send` wrapper and one frame.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import FailureThrottle
from gateway.context import RequestContext
from gateway.errors import (
    AuthenticationError,
    ClientClosedRequestError,
    GatewayError,
    InternalError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
)
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.middleware.cors import Cors, CorsPolicy, header
from gateway.middleware.request_id import REQUEST_ID, request_id_from
from gateway.ops.access_log import AccessLog

# --- observability: where the OpenAI endpoints leave the request's context for the access log ---
CONTEXT = "gateway.ctx"
# Set by the server protocol when it gave up waiting for the request's body (and answered 408 itself).
READ_TIMED_OUT = "gateway.read_timed_out"
# Azure OpenAI's paths: /openai/deployments/{deployment}/chat/completions and the like.
AZURE_PREFIX = "/openai/deployments/"
AZURE_DEPLOYMENT = "gateway.azure_deployment"
# Never throttled: a load balancer's or the kubelet's checks may share an address with a bad client.
PROBES = frozenset({"/healthz", "/readyz"})

log = get_logger("errors")

# An error's status, body and extra headers in a client dialect's shape.
ErrorRenderer = Callable[[GatewayError], tuple[int, bytes, dict[str, str]]]


class EdgeMiddleware:
    """`azure_paths`: the endpoints behind Azure OpenAI's `/openai/deployments/{deployment}/...`, by
    the path's end (`/chat/completions`, ...); the deployment goes in the scope (AZURE_DEPLOYMENT).
    `throttle`: failed authentications per client address (refused with 429 past its rate).
    `cors`: the opt-in CORS policy."""

    def __init__(self, app: ASGIApp, direct_paths: Mapping[str, ASGIApp] | None = None,
                 access_log: AccessLog | None = None, metrics: Metrics | None = None,
                 renderers: Mapping[str, ErrorRenderer] | None = None, azure_paths: Mapping[str, ASGIApp] | None = None,
                 throttle: FailureThrottle | None = None, cors: Cors | None = None) -> None:
        self.app = app
        self.direct_paths = dict(direct_paths or {})
        # Paths whose clients speak another dialect than OpenAI's: their errors are rendered in it.
        self.renderers = dict(renderers or {})
        # Longest ends first: "/chat/completions" before "/completions".
        self.azure_paths = sorted((azure_paths or {}).items(), key=lambda item: -len(item[0]))
        self.access_log = access_log or AccessLog(enabled=False)  # --- observability ---
        self.metrics = metrics
        self.in_flight = metrics.child(metrics.in_flight) if metrics is not None else None
        self.throttle = throttle
        self.cors = cors or Cors()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        scope[REQUEST_ID] = request_id
        added = [(b"x-request-id", request_id.encode("ascii"))]
        cors = self.cors.policy
        if cors is not None:
            origin = header(scope["headers"], b"origin")
            if origin is not None and cors.allows(origin):
                if scope["method"] == "OPTIONS":
                    requested = header(scope["headers"], b"access-control-request-method")
                    if requested is not None:
                        await _preflight(send, cors, origin, requested, scope, added)
                        return
                added.extend(cors.response_headers(origin))
        started = False
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        path = scope["path"]
        endpoint = self.direct_paths.get(path)
        if endpoint is None and path.startswith(AZURE_PREFIX):
            endpoint = self._azure(scope, path)
        began = time.perf_counter()
        in_flight = self.in_flight if endpoint is not None else None  # --- observability ---
        if in_flight is not None:
            in_flight.inc()
        error: GatewayError | None = None
        throttle = self.throttle
        try:
            if throttle is not None and throttle.blocked and path not in PROBES:
                self._check_throttle(throttle, scope)
            if endpoint is not None:
                await endpoint(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except GatewayError as exc:
            error = exc
            if isinstance(exc, AuthenticationError):
                self._auth_failed(scope)
            elif isinstance(exc, ClientClosedRequestError) and scope.get(READ_TIMED_OUT):
                error = RequestTimeoutError("The request's body did not arrive in time.")
            if not started:
                await send_error(send, error, added, self.renderers.get(path))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unhandled error", extra={"fields": {"request_id": request_id, "path": path}})
            error = InternalError(f"The gateway failed to handle the request (request id {request_id}).")
            if not started:
                await send_error(send, error, added, self.renderers.get(path))
        finally:
            if in_flight is not None:
                in_flight.dec()
        if endpoint is not None:
            self._observed(scope, request_id, began, status or (error.http_status if error else 500), error)

    def _azure(self, scope: Scope, path: str) -> ASGIApp | None:
        rest = path[len(AZURE_PREFIX):]
        for end, endpoint in self.azure_paths:
            if rest.endswith(end):  # the longest end that fits decides: no deployment is no match
                deployment = rest[:-len(end)]
                if not deployment:
                    return None
                scope[AZURE_DEPLOYMENT] = deployment
                return endpoint
        return None

    def _check_throttle(self, throttle: FailureThrottle, scope: Scope) -> None:
        client: tuple[str, int] | None = scope.get("client")
        wait = throttle.retry_after(client[0]) if client else None
        if wait is not None:
            if self.metrics is not None:
                self.metrics.child(self.metrics.auth_failures, "throttled").inc()
            raise RateLimitError("Too many failed authentications from your address; retry later.",
                                 code="too_many_failed_authentications",
                                 headers={"retry-after": str(math.ceil(wait))})

    def _auth_failed(self, scope: Scope) -> None:
        if self.metrics is not None:
            self.metrics.child(self.metrics.auth_failures, "failed").inc()
        client: tuple[str, int] | None = scope.get("client")
        if self.throttle is not None and client:
            self.throttle.failed(client[0])

    # --- observability ---
    def _observed(self, scope: Scope, request_id: str, began: float, status: int,
                  error: GatewayError | None) -> None:
        """After an OpenAI request: count what the pipeline never saw, write the access line."""
        ctx: RequestContext | None = scope.get(CONTEXT)
        if error is not None and self.metrics is not None and (ctx is None or ctx.status < 400):
            # Refused before the pipeline observed it (bad body, bad key, unknown alias): counted
            # without an alias, whose value came from the client.
            self.metrics.count_request("", "", "", error.http_status)
        if self.access_log.active():
            self.access_log.write(request_id, scope["path"], status, began, ctx,
                                  error.error_type if error is not None else None)
    # --- end observability ---


async def send_error(send: Send, error: GatewayError, added: list[tuple[bytes, bytes]],
                     render: ErrorRenderer | None = None) -> None:
    status, body, extra = render(error) if render is not None else (error.http_status, error.to_body(), error.headers)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *added]
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    if render is not None:  # Anthropic's clients read the request id from `request-id`
        headers.extend((b"request-id", value) for name, value in added if name == b"x-request-id")
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _preflight(send: Send, cors: CorsPolicy, origin: bytes, method: bytes, scope: Scope,
                     added: list[tuple[bytes, bytes]]) -> None:
    allowed = cors.preflight(origin, method, header(scope["headers"], b"access-control-request-headers"))
    if allowed is None:
        await send_error(send, PermissionDeniedError("The CORS preflight asks for a method or headers the gateway "
                                                     "does not allow.", code="cors_refused"), added)
        return
    await send({"type": "http.response.start", "status": 204, "headers": [*added, *allowed]})
    await send({"type": "http.response.body", "body": b""})
