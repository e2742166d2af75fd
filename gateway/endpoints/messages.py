"""POST /v1/messages/count_tokens: the input tokens of a Messages body, counted by the gateway's own
tokenizer over what the TPM reserve counts (system, messages, tools), with no provider call."""

from __future__ import annotations

import orjson
from starlette.types import Receive, Scope, Send

from gateway.context import JSONReply
from gateway.dialects.messages.dialect import MessagesDialect
from gateway.dialects.messages.models import count_tokens
from gateway.endpoints.asgi import read_body, request_headers, send_json
from gateway.errors import GatewayError, MethodNotAllowedError
from gateway.runtime import Services
from gateway.schemas.body import parse_json


class CountTokensEndpoint:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.dialect = MessagesDialect()

    def render_error(self, error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
        return self.dialect.error(error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            raise MethodNotAllowedError(f"Use POST for {scope['path']}.")
        headers = request_headers(scope)
        runtime = self.services.current()
        principal = runtime.auth.authenticate(headers)
        raw = await read_body(receive, headers, self.services.max_body_bytes)
        body = parse_json(raw)
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str):
            runtime.auth.authorize(principal, runtime.table.resolve(model) or model)
        tokens = count_tokens(body, self.services.tokens)
        await send_json(send, JSONReply(200, orjson.dumps({"input_tokens": tokens})))
