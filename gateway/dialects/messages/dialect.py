"""The Messages codecs as a gateway dialect (gateway.dialects.base.Dialect): what the endpoint, the
pipeline and the router call. A Messages body always keeps its own form beside the canonical one, so
an Anthropic deployment gets it as sent (with the client's `anthropic-*` headers) and its answer and
errors come back untouched; any other deployment gets the canonical request, and its answer is
encoded here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.context import NativeCall, RequestContext, Usage
from gateway.dialects.base import ParsedCall, passthrough_error
from gateway.dialects.messages.errors import encode_error, stream_error_event
from gateway.dialects.messages.headers import forwarded_headers
from gateway.dialects.messages.request import parse_request_lenient
from gateway.dialects.messages.response import encode_response
from gateway.dialects.messages.stream import StreamEncoder
from gateway.dialects.messages.usage import UsageReader, usage_from_body
from gateway.errors import GatewayError
from gateway.providers.base import ParsedResponse
from gateway.schemas import Operation

NAME = "messages"


class MessagesDialect:
    name = NAME
    operation = Operation.CHAT

    def parse(self, body: object, headers: Mapping[str, str]) -> ParsedCall:
        canonical, untranslatable = parse_request_lenient(body)
        assert isinstance(body, dict)  # parse_request_lenient refused anything else
        return ParsedCall(canonical, NativeCall(NAME, body, forwarded_headers(headers)), untranslatable)

    def encode_answer(self, answer: ParsedResponse, ctx: RequestContext) -> bytes:
        if answer.native:
            return answer.body
        return orjson.dumps(encode_response(answer.data, _request(ctx)))

    def stream_encoder(self, ctx: RequestContext) -> StreamEncoder:
        return StreamEncoder(_request(ctx))

    def error(self, error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
        native = passthrough_error(error, NAME)
        if native is not None:  # Anthropic's own words: Claude Code's recovery matches on them
            return native[0], native[1], dict(error.headers)
        return encode_error(error)

    def error_event(self, error: GatewayError) -> bytes:
        return stream_error_event(error)

    def usage_reader(self) -> UsageReader:
        return UsageReader()

    def usage_of_body(self, body: bytes) -> Usage | None:
        return usage_from_body(body)


def _request(ctx: RequestContext) -> dict[str, Any]:
    return ctx.native.body if ctx.native is not None else ctx.body
