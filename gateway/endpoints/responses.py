"""The stored side of the Responses API: GET and DELETE /v1/responses/{id}, GET
/v1/responses/{id}/input_items, and POST /v1/responses/input_tokens. Every read is scoped to the
calling key: another key's response is simply not found."""

from __future__ import annotations

import orjson
from starlette.types import Receive, Scope, Send

from gateway.context import JSONReply
from gateway.conversations.stage import owner_of
from gateway.dialects.responses.request import parse_request
from gateway.endpoints.asgi import read_body, request_headers, send_json
from gateway.errors import InvalidRequestError, MethodNotAllowedError, ResponseNotFoundError
from gateway.runtime import Services
from gateway.schemas.body import parse_json


class StoredResponseEndpoint:
    """/v1/responses/{response_id} (GET, DELETE) and /v1/responses/{response_id}/input_items (GET)."""

    def __init__(self, services: Services, *, items: bool = False) -> None:
        self.services = services
        self.items = items

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in (("GET",) if self.items else ("GET", "DELETE")):
            raise MethodNotAllowedError(f"{method} is not supported on {scope['path']}.")
        runtime = self.services.current()
        owner = owner_of(runtime.auth.authenticate(request_headers(scope)))
        response_id = str(scope["path_params"]["response_id"])
        conversations = runtime.conversations
        body: dict[str, object]
        if self.items:
            query = _query(scope)
            body = await conversations.input_items(response_id, owner, after=query.get("after"),
                                                   limit=_limit(query.get("limit")),
                                                   order=query.get("order", "desc"))
        elif method == "DELETE":
            if not await conversations.delete(response_id, owner):
                raise ResponseNotFoundError(response_id)
            body = {"id": response_id, "object": "response.deleted", "deleted": True}
        else:
            found = await conversations.get(response_id, owner)
            if found is None:
                raise ResponseNotFoundError(response_id)
            body = found
        await send_json(send, JSONReply(200, orjson.dumps(body)))


class InputTokensEndpoint:
    """POST /v1/responses/input_tokens: the prompt a Responses body would send, counted by the
    gateway's tokenizer (its stored history included), with no provider call."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            raise MethodNotAllowedError(f"Use POST for {scope['path']}.")
        headers = request_headers(scope)
        runtime = self.services.current()
        owner = owner_of(runtime.auth.authenticate(headers))
        body = parse_json(await read_body(receive, headers, self.services.max_body_bytes))
        previous = body.get("previous_response_id") if isinstance(body, dict) else None
        history = await runtime.conversations.history(previous, owner) if isinstance(previous, str) else None
        canonical = parse_request(body, history, drop_builtin_tools=True)
        tokens, _ = self.services.tokens.count_prompt("chat", canonical, canonical["model"])
        await send_json(send, JSONReply(200, orjson.dumps({"object": "response.input_tokens",
                                                           "input_tokens": tokens})))


def _query(scope: Scope) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


def _limit(value: str | None) -> int:
    if value is None:
        return 20
    if not value.isdigit():
        raise InvalidRequestError("Invalid value for 'limit': expected an integer from 1 to 100.",
                                  code="invalid_value", param="limit")
    return int(value)
