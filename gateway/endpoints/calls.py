"""The endpoints that call a model, one per client dialect and operation. Each is a plain ASGI
callable: the caller is authenticated first, the body is read with a size bound (decompressed) and
parsed with orjson (nesting bounded), the dialect turns it into the canonical call, the pipeline of
the config current when the request arrives answers it, and the answer leaves in the dialect's shape
(errors too: see `render_error`)."""

from __future__ import annotations

import time

from starlette.types import Receive, Scope, Send

from gateway.context import JSONReply
from gateway.dialects import Dialect
from gateway.endpoints.asgi import read_body, request_headers, send_json, send_stream, unless_client_leaves
from gateway.errors import GatewayError, MethodNotAllowedError
from gateway.middleware.edge import AZURE_DEPLOYMENT, CONTEXT
from gateway.middleware.request_id import REQUEST_ID
from gateway.pipeline import new_context
from gateway.runtime import Services
from gateway.schemas.body import parse_json


class DialectEndpoint:
    """`alias_from_path`: Azure OpenAI's paths, where the deployment named in the path (put in the
    scope by the edge) is the alias, whatever the body's `model` says."""

    def __init__(self, dialect: Dialect, services: Services, *, alias_from_path: bool = False) -> None:
        self.dialect = dialect
        self.services = services
        self.alias_from_path = alias_from_path

    def render_error(self, error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
        return self.dialect.error(error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        if scope["method"] != "POST":
            raise MethodNotAllowedError(f"Use POST for {scope['path']}.", headers={"allow": "POST"})
        headers = request_headers(scope)
        runtime = self.services.current()
        # Before the body is read: an anonymous caller's body is neither read whole nor parsed.
        principal = runtime.auth.authenticate(headers)
        body = parse_json(await read_body(receive, headers, self.services.max_body_bytes))
        if self.alias_from_path and isinstance(body, dict):
            body["model"] = scope[AZURE_DEPLOYMENT]
        call = self.dialect.parse(body, headers)
        ctx = scope[CONTEXT] = new_context(scope.get(REQUEST_ID, ""), self.dialect.operation, call.body, headers,
                                           started)
        ctx.dialect, ctx.native, ctx.untranslatable = self.dialect.name, call.native, call.untranslatable
        ctx.principal = principal
        reply = await unless_client_leaves(scope, receive, runtime.pipeline.handle(ctx, authenticated=True))
        if reply is None:  # the client left: nothing to send, the call was cancelled and settled
            return
        try:
            if isinstance(reply, JSONReply):
                await send_json(send, reply)
            else:
                await send_stream(scope, send, receive, reply)
        finally:  # the settle that follows the answer, also when the client left before it went out
            # (Taken off the reply: the settlement holds the reply, a cycle only the garbage collector
            # would free, with every request's context and body until then.)
            settlement, reply.settlement = reply.settlement, None
            if settlement is not None:
                await settlement.after_answer()
