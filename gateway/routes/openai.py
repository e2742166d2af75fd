"""The model list: GET /v1/models and GET /v1/models/{alias}."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import MethodNotAllowedError, ModelNotFoundError
from gateway.pipeline import JSONReply
from gateway.routes.asgi import request_headers, send_json
from gateway.runtime import Services


class ModelsEndpoint:
    """GET /v1/models (the aliases this key may use) and GET /v1/models/{alias}."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] != "GET":
            raise MethodNotAllowedError(f"Use GET for {scope['path']}.", headers={"allow": "GET"})
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
