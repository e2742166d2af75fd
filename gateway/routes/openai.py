"""The OpenAI-compatible endpoints. Each is a plain ASGI callable: the body is read with a size
bound, parsed with orjson, validated against the OpenAI schema, and handed to the pipeline of the
config that is current when the request arrives."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.errors import InvalidRequestError, MethodNotAllowedError, ModelNotFoundError
from gateway.middleware.edge import CONTEXT
from gateway.middleware.request_id import REQUEST_ID
from gateway.pipeline import JSONReply, new_context
from gateway.routes.asgi import read_body, request_headers, send_json, send_stream
from gateway.runtime import Services
from gateway.schemas import Operation, validate_request


class OpenAIEndpoint:
    def __init__(self, operation: Operation, services: Services) -> None:
        self.operation = operation
        self.services = services

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        if scope["method"] != "POST":
            raise MethodNotAllowedError(f"Use POST for {scope['path']}.")
        headers = request_headers(scope)
        raw = await read_body(receive, headers, self.services.max_body_bytes)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequestError(
                "We could not parse the JSON body of your request. The body must be valid JSON.",
                code="invalid_json") from None
        validate_request(self.operation, body)
        ctx = scope[CONTEXT] = new_context(scope.get(REQUEST_ID, ""), self.operation, body, headers, started)
        reply = await self.services.current().pipeline.handle(ctx)
        if isinstance(reply, JSONReply):
            # Taken off the reply: `after` holds the reply, a cycle only the garbage collector
            # would free (every request's context and body kept until then, and its pauses).
            after, reply.after = reply.after, None
            try:
                await send_json(send, reply)
            finally:  # the settle writes, also when the client left before the answer went out
                if after is not None:
                    await after()
        else:
            await send_stream(send, receive, reply)


class ModelsEndpoint:
    """GET /v1/models (the aliases this key may use) and GET /v1/models/{alias}."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] != "GET":
            raise MethodNotAllowedError(f"Use GET for {scope['path']}.")
        runtime = self.services.current()
        principal = runtime.auth.authenticate(request_headers(scope))
        created = int(runtime.table.created)
        visible = [a for a in runtime.config.models if principal.may_use(a)]
        wanted = scope.get("path_params", {}).get("model")
        if wanted is not None:
            if wanted not in visible:
                raise ModelNotFoundError(f"The model '{wanted}' does not exist or you do not have access to it.",
                                         param="model")
            await send_json(send, JSONReply(200, orjson.dumps(_model(wanted, created))))
            return
        body = {"object": "list", "data": [_model(alias, created) for alias in visible]}
        await send_json(send, JSONReply(200, orjson.dumps(body)))


def _model(alias: str, created: int) -> dict[str, Any]:
    return {"id": alias, "object": "model", "created": created, "owned_by": "llm-gateway"}
