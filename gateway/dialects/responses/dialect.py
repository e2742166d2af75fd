"""The Responses codecs as a gateway dialect (gateway.dialects.base.Dialect). The body is kept as sent
for a deployment that speaks Responses itself (OpenAI, or a server configured `responses: true`);
any other gets the canonical request. A turn that continues a stored conversation
(`previous_response_id`) is rebuilt by the conversations stage, which also stores each answer."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.context import NativeCall, RequestContext, Usage
from gateway.dialects.base import ParsedCall
from gateway.dialects.responses.errors import encode_error, failure_object
from gateway.dialects.responses.request import translate
from gateway.dialects.responses.response import encode_response
from gateway.dialects.responses.stream import StreamEncoder, new_response_id
from gateway.dialects.responses.usage import UsageReader, usage_from_body
from gateway.errors import GatewayError
from gateway.providers.base import ParsedResponse
from gateway.schemas import Operation

NAME = "responses"


class ResponsesDialect:
    name = NAME
    operation = Operation.CHAT

    def parse(self, body: object, headers: Mapping[str, str]) -> ParsedCall:
        # What only OpenAI can run (web_search, hosted tool call items, file ids, …) is refused by a
        # translating deployment only: one that speaks Responses gets the body as sent.
        canonical, untranslatable = translate(body)
        assert isinstance(body, dict)  # translate refused anything else
        return ParsedCall(canonical, NativeCall(NAME, body), untranslatable)

    def encode_answer(self, answer: ParsedResponse, ctx: RequestContext) -> bytes:
        if answer.native:
            return answer.body
        return orjson.dumps(encode_response(answer.data, request_of(ctx), response_id=new_response_id(),
                                            created_at=int(time.time())))

    def stream_encoder(self, ctx: RequestContext) -> StreamEncoder:
        return StreamEncoder(request_of(ctx))

    def error(self, error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
        return encode_error(error)

    def error_event(self, error: GatewayError) -> bytes:
        """A Responses stream relayed from the provider failed after it began: its end, as a
        `response.failed` (Codex reports a dropped stream otherwise)."""
        response = {"id": new_response_id(), "object": "response", "created_at": int(time.time()),
                    "status": "failed", "error": failure_object(error), "incomplete_details": None,
                    "output": [], "usage": None}
        payload = {"type": "response.failed", "sequence_number": 0, "response": response}
        return b"event: response.failed\ndata: " + orjson.dumps(payload) + b"\n\n"

    def usage_reader(self) -> UsageReader:
        return UsageReader()

    def usage_of_body(self, body: bytes) -> Usage | None:
        return usage_from_body(body)


def request_of(ctx: RequestContext) -> dict[str, Any]:
    """The client's Responses body, whose fields the answer echoes."""
    return ctx.native.body if ctx.native is not None else ctx.body
