"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import hmac

import orjson
from starlette.types import Receive, Scope, Send

from gateway.auth import presented_key
from gateway.context import JSONReply
from gateway.endpoints.asgi import request_headers, send_json
from gateway.errors import AuthenticationError
from gateway.metrics import CONTENT_TYPE
from gateway.runtime import Services


class HealthEndpoint:
    """Liveness: the process answers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, JSONReply(200, b'{"status":"ok"}'))


class ReadyEndpoint:
    """Readiness: a config is loaded and the store answers (the store only with `fail_closed`)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.services
        checks = {"config": services.runtime is not None,
                  "store": services.store is not None and await services.store.ping()}
        services.metrics.store_up.set(1 if checks["store"] else 0)
        # --- deploy: with fail_open the gateway serves without its store, so a Redis outage must not
        # take every replica out of the load balancer at once (Kubernetes readiness); with fail_closed
        # it refuses traffic anyway, and readiness says so.
        runtime = services.runtime
        store_optional = runtime is not None and runtime.config.store.failure_policy == "fail_open"
        ready = checks["config"] and (checks["store"] or store_optional)
        # --- end deploy ---
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        if services.runtime is not None:
            body["config"] = services.runtime.digest
        await send_json(send, JSONReply(200 if ready else 503, orjson.dumps(body)))


class MetricsEndpoint:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = self.services.current().config.metrics.bearer_token
        if token is not None:
            presented = presented_key(request_headers(scope)) or ""
            if not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
                raise AuthenticationError("/metrics needs 'Authorization: Bearer <metrics.bearer_token>'.",
                                          code="invalid_metrics_token", headers={"www-authenticate": "Bearer"})
        payload = self.services.metrics.exposition()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE.encode()),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
