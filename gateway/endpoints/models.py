"""The model list: GET /v1/models and GET /v1/models/{alias}, in OpenAI's shape, or in Anthropic's
when the request carries `anthropic-version` (Claude Code fills its model picker from it)."""

from __future__ import annotations

import orjson
from starlette.types import Receive, Scope, Send

from gateway.context import JSONReply
from gateway.dialects.messages.models import models_page
from gateway.endpoints.asgi import request_headers, send_json
from gateway.errors import MethodNotAllowedError, ModelNotFoundError
from gateway.runtime import Services


class ModelsEndpoint:
    """The aliases the calling key may use."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            raise MethodNotAllowedError(f"Use GET for {scope['path']}.", headers={"allow": "GET"})
        runtime = self.services.current()
        headers = request_headers(scope)
        principal = runtime.auth.authenticate(headers)
        created = int(runtime.table.created)
        visible = [a for a in runtime.config.models if principal.may_use(a)]
        anthropic = "anthropic-version" in headers
        wanted = scope.get("path_params", {}).get("model")
        if wanted is not None:
            if wanted not in visible:
                raise ModelNotFoundError(f"The model '{wanted}' does not exist or you do not have access to it.",
                                         param="model")
            model = models_page([wanted], created)["data"][0] if anthropic else _model(wanted, created)
            await send_json(send, JSONReply(200, orjson.dumps(model)))
            return
        body = models_page(visible, created) if anthropic else \
            {"object": "list", "data": [_model(alias, created) for alias in visible]}
        await send_json(send, JSONReply(200, orjson.dumps(body)))


def _model(alias: str, created: int) -> dict[str, object]:
    return {"id": alias, "object": "model", "created": created, "owned_by": "llm-gateway"}
