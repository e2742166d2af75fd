"""Anthropic Messages API (`POST /v1/messages`) behind the OpenAI chat-completions interface.

Request translation (OpenAI → Anthropic), in `anthropic_request.translate_request`:
- `system` and `developer` messages, wherever they appear, are hoisted into `system`; consecutive
  messages of one role are merged (Anthropic requires alternating turns); `tool` messages become
  `tool_result` blocks in a user turn, listed before any other block of that turn.
- `max_completion_tokens` (preferred) or `max_tokens`; when the client gives neither, the model
  family's maximum output (`default_max_tokens`, table in anthropic_request.py; 4096 if unknown).
- `temperature` is clamped: OpenAI accepts 0..2, Anthropic 0..1, so anything above 1 is sent as 1.
- `response_format` `json_schema` is a forced tool named `json_response` whose input is returned as
  the message text; `json_object` adds an instruction to the system prompt.
- `logprobs`, `n>1`, penalties, `seed`, `logit_bias`, audio and the legacy `functions` API are
  unsupported: 400 naming the parameter, or silently dropped with `drop_unsupported_params`.

- `reasoning_effort` → extended thinking (`thinking.budget_tokens` by effort, below max_tokens; see
  reasoning.py); with it, temperature other than 1, top_k and top_p below 0.95 are a 400 (dropped with
  `drop_unsupported_params`), as is a forced tool. `file` parts (PDF or text data URLs) → `document`
  blocks; assistant `thinking_blocks` go back first in their turn.

Response translation: text blocks are joined, `tool_use` blocks become `tool_calls`, thinking blocks
become `reasoning_content` (their text) and `thinking_blocks` (with signatures, redacted ones whole);
server-tool blocks are ignored. Usage: prompt_tokens = input + cache_read + cache_creation (OpenAI
counts cached tokens inside prompt_tokens), cached_tokens = cache_read, cache_write = cache_creation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.context import NativeCall, Usage
from gateway.errors import (
    ContextLengthExceededError,
    GatewayError,
    InvalidRequestError,
    UpstreamError,
    UpstreamProtocolError,
    parse_retry_after,
)
from gateway.providers.anthropic_request import JSON_TOOL, default_max_tokens, translate_request
from gateway.providers.base import Capabilities, ParsedResponse, UpstreamRequest, load_json_object, usage_with_cache
from gateway.providers.reasoning import reasoning_fields
from gateway.providers.sse import DONE, SSESplitter, event_data, sse
from gateway.schemas import Operation

__all__ = ["JSON_TOOL", "AnthropicAdapter", "AnthropicStream", "anthropic_error", "default_max_tokens"]

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}

# Anthropic error type → HTTP status, for errors reported inside a stream (no HTTP status there).
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit")


class AnthropicAdapter:
    """Chat completions only: Anthropic has no embeddings or legacy completions endpoint here."""

    capabilities = Capabilities(operations=frozenset({Operation.CHAT}))

    def __init__(
        self,
        base_url: str | None = None,
        *,
        version: str = "2023-06-01",
        headers: Mapping[str, str] | None = None,
        drop_unsupported_params: bool = False,
    ) -> None:
        base = (base_url or "https://api.anthropic.com").rstrip("/")
        self.url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self._headers = {"content-type": "application/json", "anthropic-version": version, **(headers or {})}
        self.drop_unsupported_params = drop_unsupported_params

    def build_request(
        self,
        operation: Operation,
        body: dict[str, Any],
        model: str,
        *,
        stream: bool,
        drop_unsupported_params: bool | None = None,
    ) -> UpstreamRequest:
        """`drop_unsupported_params` (the alias setting) overrides the constructor's default."""
        if operation is not Operation.CHAT:
            raise InvalidRequestError(
                f"Anthropic models do not support the {operation.value} endpoint; use chat completions.",
                code="unsupported_operation")
        drop = self.drop_unsupported_params if drop_unsupported_params is None else drop_unsupported_params
        payload = translate_request(body, model, stream=stream, drop_unsupported=drop)
        return UpstreamRequest("POST", self.url, dict(self._headers), orjson.dumps(payload), stream)

    def native_request(self, call: NativeCall, model: str, *, stream: bool) -> UpstreamRequest | None:
        """A Messages request as the client sent it: its `anthropic-*` headers (version, betas) win
        over the configured ones, and every field the gateway does not know reaches Anthropic."""
        if call.dialect != "messages":
            return None
        headers = dict(self._headers)
        headers.update(call.headers)
        return UpstreamRequest("POST", self.url, headers, orjson.dumps({**call.body, "model": model}), stream)

    def parse_response(self, operation: Operation, status: int, body: bytes, *,
                       request: Mapping[str, Any] | None = None, model: str | None = None) -> ParsedResponse:
        message = load_json_object(body, "Anthropic")
        data = chat_completion(message)
        usage = usage_of(message.get("usage")) or Usage()
        return ParsedResponse(data=data, body=orjson.dumps(data), usage=usage)

    def stream_translator(self, operation: Operation, *, client_wants_usage: bool,
                          model: str | None = None) -> AnthropicStream:
        return AnthropicStream(client_wants_usage)

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return anthropic_error(status, body, headers)


# ---------------------------------------------------------------------------------------------
# Complete answers
# ---------------------------------------------------------------------------------------------


def chat_completion(message: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """An Anthropic `message` object → an OpenAI `chat.completion` (usage included)."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thoughts: list[str] = []
    thinking: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            thoughts.append(str(block.get("thinking") or ""))
            thinking.append({"type": "thinking", "thinking": str(block.get("thinking") or ""),
                             "signature": str(block.get("signature") or "")})
        elif kind == "redacted_thinking":
            thinking.append({"type": "redacted_thinking", "data": str(block.get("data") or "")})
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if block.get("name") == JSON_TOOL:
                texts.append(arguments)
            else:
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": arguments}})
    content = "".join(texts) if texts else None
    reply: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None,
                             **reasoning_fields(thoughts, thinking)}
    if calls:
        reply["tool_calls"] = calls
    usage = usage_of(message.get("usage")) or Usage()
    return {
        "id": message.get("id") or "",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": message.get("model") or "",
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": finish_reason(message.get("stop_reason"), bool(calls))}],
        "usage": usage.to_openai(),
    }


def finish_reason(stop_reason: object, has_tool_calls: bool) -> str:
    reason = _STOP_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    # A forced `json_response` call is the answer itself, not a tool call for the client.
    return "stop" if reason == "tool_calls" and not has_tool_calls else reason


def usage_of(raw: object) -> Usage | None:
    """Anthropic usage → Usage (input_tokens exclude cache reads and writes)."""
    return usage_with_cache(raw, uncached="input_tokens", output="output_tokens",
                            cache_read="cache_read_input_tokens", cache_write="cache_creation_input_tokens")



# ---------------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------------

_JSON_SLOT = -1  # content-block slot of the forced `json_response` tool: its input is message text


class AnthropicStream:
    """Anthropic SSE (message_start, content_block_start/delta/stop, message_delta, message_stop,
    ping, error) → OpenAI chat.completion.chunk SSE.

    Tool calls are numbered among tool calls (OpenAI `index`), not by Anthropic content-block
    index; their `partial_json` fragments are forwarded unchanged, so the client's concatenation
    equals Anthropic's byte for byte. Thinking deltas are `delta.reasoning_content`; a thinking block's
    signature goes out when the block ends, as `delta.thinking_blocks` (a redacted block whole, at its
    start). Citation deltas are not forwarded.
    """

    def __init__(self, client_wants_usage: bool, *, created: int | None = None) -> None:
        self._splitter = SSESplitter()
        self._wants_usage = client_wants_usage
        self._created = created
        self._id = ""
        self._model = ""
        self._slots: dict[int, int] = {}  # content-block index → tool-call index (or _JSON_SLOT)
        self._has_args: dict[int, bool] = {}
        self._signatures: dict[int, str] = {}  # thinking block index → its signature so far
        self._tool_calls = 0
        self._raw_usage: dict[str, Any] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        return b"".join([self._event(event) for event in self._splitter.feed(data)])

    def finish(self) -> bytes:
        rest = self._splitter.rest()
        return self._event(rest) if rest else b""

    def _event(self, event: bytes) -> bytes:
        payload = event_data(event)
        if payload is None or self.done:
            return b""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("Anthropic sent a stream event that is not JSON.") from None
        if not isinstance(data, dict):
            return b""
        kind = data.get("type")
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_stop":
            return self._block_stop(data)
        if kind == "message_start":
            return self._message_start(data)
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self.done = True
            tail = sse(orjson.dumps(self._usage_chunk())) if self._wants_usage else b""
            return tail + DONE
        if kind == "error":
            raise anthropic_error(None, payload, {})
        return b""  # ping, and event types added to the API later

    def _message_start(self, data: dict[str, Any]) -> bytes:
        message = data.get("message") or {}
        self._id = str(message.get("id") or "")
        self._model = str(message.get("model") or "")
        if self._created is None:
            self._created = int(time.time())
        self._note_usage(message.get("usage"))
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, data: dict[str, Any]) -> bytes:
        block = data.get("content_block") or {}
        index = data.get("index")
        if not isinstance(index, int):
            return b""
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return self._chunk({"content": text}) if text else b""
        if kind == "thinking":
            self._signatures[index] = str(block.get("signature") or "")
            text = block.get("thinking")
            return self._chunk({"reasoning_content": text}) if text else b""
        if kind == "redacted_thinking":
            redacted = {"type": "redacted_thinking", "data": str(block.get("data") or "")}
            return self._chunk({"thinking_blocks": [redacted]})
        if kind != "tool_use":
            return b""  # server tools: not part of the OpenAI answer
        initial = block.get("input")
        arguments = orjson.dumps(initial).decode() if initial else ""
        self._has_args[index] = bool(arguments)
        if block.get("name") == JSON_TOOL:
            self._slots[index] = _JSON_SLOT
            return self._chunk({"content": arguments}) if arguments else b""
        slot = self._slots[index] = self._tool_calls
        self._tool_calls += 1
        call = {"index": slot, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": arguments}}
        return self._chunk({"tool_calls": [call]})

    def _delta(self, data: dict[str, Any]) -> bytes:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return self._chunk({"content": text}) if text else b""
        if kind == "thinking_delta":
            text = delta.get("thinking")
            return self._chunk({"reasoning_content": text}) if text else b""
        if kind == "signature_delta":
            index = data.get("index")
            if isinstance(index, int):
                self._signatures[index] = self._signatures.get(index, "") + str(delta.get("signature") or "")
            return b""
        if kind != "input_json_delta":
            return b""  # citations_delta
        fragment, index = delta.get("partial_json"), data.get("index")
        if not fragment or not isinstance(index, int) or index not in self._slots:
            return b""
        slot = self._slots[index]
        self._has_args[index] = True
        if slot == _JSON_SLOT:
            return self._chunk({"content": fragment})
        return self._chunk({"tool_calls": [{"index": slot, "function": {"arguments": fragment}}]})

    def _block_stop(self, data: dict[str, Any]) -> bytes:
        index = data.get("index")
        if isinstance(index, int) and index in self._signatures:
            signed = {"type": "thinking", "thinking": "", "signature": self._signatures.pop(index)}
            return self._chunk({"thinking_blocks": [signed]})
        if not isinstance(index, int) or index not in self._slots or self._has_args.get(index, True):
            return b""
        slot = self._slots[index]
        # A tool called without arguments streams no input at all; OpenAI clients expect "{}".
        if slot == _JSON_SLOT:
            return self._chunk({"content": "{}"})
        return self._chunk({"tool_calls": [{"index": slot, "function": {"arguments": "{}"}}]})

    def _message_delta(self, data: dict[str, Any]) -> bytes:
        self._note_usage(data.get("usage"))
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        if stop_reason is None:
            return b""
        self.finish_reason = finish_reason(stop_reason, self._tool_calls > 0)
        return self._chunk({}, self.finish_reason)

    def _note_usage(self, raw: object) -> None:
        if isinstance(raw, dict):
            # message_delta counts are cumulative; fields it leaves out keep message_start's value.
            self._raw_usage.update({k: v for k, v in raw.items() if v is not None})
            self.usage = usage_of(self._raw_usage)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._id, "object": "chat.completion.chunk", "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._wants_usage:
            chunk["usage"] = None
        return sse(orjson.dumps(chunk))

    def _usage_chunk(self) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                "model": self._model, "choices": [], "usage": (self.usage or Usage()).to_openai()}


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def anthropic_error(status: int | None, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """`{"type": "error", "error": {"type": ..., "message": ...}}` → the gateway's error. The
    provider's status, type and message are kept (529 overloaded stays 529, hence retryable); a
    prompt longer than the context window is a ContextLengthExceededError. `status` None means the
    error came inside a stream and is derived from the error type."""
    message, error_type = None, None
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else None
        error_type = error.get("type") if isinstance(error.get("type"), str) else None
    if status is None:
        status = _ERROR_STATUS.get(error_type or "", 502)
    if message is None:
        message = f"Anthropic answered HTTP {status}."
        if body and data is None:
            message += " " + body[:200].decode("utf-8", "replace")
    lowered = message.lower()
    if status == 400 and any(marker in lowered for marker in _CONTEXT_MARKERS):
        return ContextLengthExceededError(message, param="messages")
    raw_retry = headers.get("retry-after") or headers.get("Retry-After")
    return UpstreamError(message, status=status, error_type=error_type,
                         headers={"retry-after": raw_retry} if raw_retry else None,
                         retry_after=parse_retry_after(raw_retry), provider="anthropic")
