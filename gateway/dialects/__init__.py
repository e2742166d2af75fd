"""Client dialects (see gateway.dialects.base): every API a client may speak, by name."""

from __future__ import annotations

from gateway.dialects.base import Dialect, ParsedCall, StreamEncoder, UsageReader, passthrough_error
from gateway.dialects.chat import ChatDialect
from gateway.dialects.messages.dialect import MessagesDialect
from gateway.dialects.passthrough import PassthroughStream
from gateway.dialects.responses.dialect import ResponsesDialect

DIALECTS: dict[str, Dialect] = {"chat": ChatDialect(), "messages": MessagesDialect(), "responses": ResponsesDialect()}


def dialect(name: str) -> Dialect:
    return DIALECTS[name]


__all__ = ["DIALECTS", "Dialect", "MessagesDialect", "ParsedCall", "PassthroughStream", "ResponsesDialect",
           "StreamEncoder",
           "UsageReader", "dialect", "passthrough_error"]
