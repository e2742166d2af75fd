"""OpenAI Chat Completions, legacy completions and embeddings: the canonical form itself, so parsing
is validation and the answer leaves as it came."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.context import RequestContext, Usage
from gateway.dialects.base import ParsedCall, StreamEncoder
from gateway.errors import GatewayError
from gateway.providers.base import ParsedResponse
from gateway.schemas import Operation, validate_request


class OpenAIUsageReader:
    """Chat answers are never passed through by dialect: nothing to read."""

    usage: Usage | None = None
    done = True
    error: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        return None


class ChatDialect:
    name = "chat"

    def __init__(self, operation: Operation = Operation.CHAT) -> None:
        self.operation = operation

    def parse(self, body: object, headers: Mapping[str, str]) -> ParsedCall:
        return ParsedCall(validate_request(self.operation, body))

    def encode_answer(self, answer: ParsedResponse, ctx: RequestContext) -> bytes:
        return answer.body

    def stream_encoder(self, ctx: RequestContext) -> StreamEncoder | None:
        return None

    def error(self, error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
        return error.http_status, error.to_body(), error.headers

    def error_event(self, error: GatewayError) -> bytes:
        return b"data: " + orjson.dumps(error.to_dict()) + b"\n\n"

    def usage_reader(self) -> OpenAIUsageReader:
        return OpenAIUsageReader()

    def usage_of_body(self, body: bytes) -> Usage | None:
        return None
