"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, Groq, Together, Mistral, DeepSeek).

The wire format is the gateway's own, so translation is nearly free: the request gets the upstream
model name, and streams pass through event by event without re-encoding. The one change to a stream
is usage: the gateway always asks for it (accounting needs it) and removes the extra usage-only
chunk when the client did not ask for it itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.context import NativeCall, Usage
from gateway.errors import (
    ContextLengthExceededError,
    GatewayError,
    UpstreamError,
    UpstreamProtocolError,
    parse_retry_after,
)
from gateway.providers.base import Capabilities, ParsedResponse, UpstreamRequest, load_json_object, token_count
from gateway.providers.sse import DONE, event_data, sse
from gateway.schemas import Operation

_PATHS = {
    Operation.CHAT: "/chat/completions",
    Operation.COMPLETIONS: "/completions",
    Operation.EMBEDDINGS: "/embeddings",
}

_JSON_HEADERS = {"content-type": "application/json"}
# How a read that carries only SSE keep-alives begins: a comment line or an empty line.
_KEEPALIVE_START = (b":", b"\n")


class OpenAIAdapter:
    capabilities = Capabilities(operations=frozenset(Operation))

    def __init__(self, base_url: str | None, headers: Mapping[str, str] | None = None, *,
                 responses: bool = False) -> None:
        self.base_url = (base_url or "https://api.openai.com/v1").rstrip("/")
        self._headers = {**_JSON_HEADERS, **(headers or {})}
        self._urls = {op: self.base_url + path for op, path in _PATHS.items()}
        # The server speaks the Responses API: such requests go to it as the client sent them.
        self.responses = responses

    def native_request(self, call: NativeCall, model: str, *, stream: bool) -> UpstreamRequest | None:
        if call.dialect != "responses" or not self.responses:
            return None
        body = {**call.body, "model": model}
        return UpstreamRequest("POST", self.base_url + "/responses", dict(self._headers), orjson.dumps(body), stream)

    def build_request(
        self, operation: Operation, body: dict[str, Any], model: str, *, stream: bool,
        drop_unsupported_params: bool | None = None,
    ) -> UpstreamRequest:
        # Everything passes through to OpenAI-compatible servers, unknown fields included, except the
        # gateway's own `thinking_blocks` (signed reasoning other providers need back).
        upstream = {**body, "model": model}
        messages = body.get("messages")
        if isinstance(messages, list) and (stripped := _without_thinking_blocks(messages)) is not None:
            upstream["messages"] = stripped
        if stream and operation is not Operation.EMBEDDINGS:
            options = body.get("stream_options")
            upstream["stream_options"] = {**options, "include_usage": True} if isinstance(
                options, dict) else {"include_usage": True}
        return UpstreamRequest("POST", self._urls[operation], dict(self._headers), orjson.dumps(upstream), stream)

    def parse_response(self, operation: Operation, status: int, body: bytes, *,
                       request: Mapping[str, Any] | None = None, model: str | None = None) -> ParsedResponse:
        data = load_json_object(body)
        return ParsedResponse(data=data, body=body, usage=usage_from(data.get("usage")))

    def stream_translator(self, operation: Operation, *, client_wants_usage: bool,
                          model: str | None = None) -> OpenAIStream:
        return OpenAIStream(client_wants_usage)

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return openai_error(status, body, headers, provider="openai")


class OpenAIStream:
    """Pass-through of OpenAI SSE, watching for usage, the finish reason, [DONE] and error events.

    Most network reads carry only content chunks: those are forwarded as one slice of the input
    (complete events only), found with a few substring searches in C. Only a read that holds a
    marker (usage, finish reason, [DONE], an error, CRLF framing) is taken apart event by event."""

    __slots__ = ("_emitted", "_error", "_keep_usage_chunk", "_pending", "done", "finish_reason", "usage")
    # Substrings that make a read worth taking apart event by event, as compact and as spaced JSON
    # write them (subclasses add their own).
    markers: tuple[bytes, ...] = (b'"usage":{', b'"usage": {', b'"finish_reason":"', b'"finish_reason": "',
                                  b"[DONE]", b'"error"')

    def __init__(self, client_wants_usage: bool) -> None:
        self._pending = b""
        self._emitted = False  # an earlier feed() returned output (the client may have it)
        self._error: GatewayError | None = None  # raised on the call after the output preceding it
        self._keep_usage_chunk = client_wants_usage
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        out = self._feed(data)
        self._emitted = self._emitted or bool(out)
        return out

    def _feed(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        if buffer.find(b"\r") >= 0:
            buffer = buffer.replace(b"\r\n", b"\n")
            # A CR may be the first half of a CRLF split across reads: keep it for the next one.
            if buffer.endswith(b"\r"):
                self._pending = buffer
                return b""
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._pending = buffer
            return b""
        complete, self._pending = buffer[: end + 2], buffer[end + 2 :]
        if self.done:
            return self._events(complete)
        # The events before the first one holding a marker pass as one slice; from that one on,
        # event by event (a whole stream often arrives in one read with the markers at its end).
        # bytes.find per marker: a C substring search each, far cheaper than one regex alternation
        # (which retries every alternative at every offset).
        first = -1
        for marker in self.markers:
            at = complete.find(marker)
            if at >= 0 and (first < 0 or at < first):
                first = at
        # A read that begins with a comment (`: PROCESSING`, `: ping`) or a blank line goes event by
        # event, where those are dropped: a stream that has sent only keep-alives has not begun, and
        # may still fall back. (Comments after a real event in the same read pass with it; clients
        # ignore them. Checking the first byte alone keeps this off the scan of every read.)
        if complete[:1] in _KEEPALIVE_START:
            first = 0
        if first < 0:
            return self._passthrough(complete)
        cut = complete.rfind(b"\n\n", 0, first)
        cut = cut + 2 if cut >= 0 else 0
        return self._events(complete[cut:], self._passthrough(complete[:cut]))

    def _passthrough(self, events: bytes) -> bytes:
        if self._keep_usage_chunk or events.find(b'"usage":') < 0:
            return events
        return _strip_usage_null(events)

    def finish(self) -> bytes:
        if self._error is not None:
            raise self._error
        rest, self._pending = self._pending.strip(), b""
        return self._event(rest) if rest else b""

    def _events(self, complete: bytes, before: bytes = b"") -> bytes:
        out = [before]
        for event in complete.split(b"\n\n"):
            if event:
                try:
                    out.append(self._event(event))
                except GatewayError as exc:
                    return self._fail(exc, b"".join(out))
        return b"".join(out)

    def _fail(self, error: GatewayError, preceding: bytes) -> bytes:
        """An error event arrived. Before any output went out, raise at once (the router may still
        retry or fall back). Mid-stream, first hand over what preceded the error in this read and
        raise on the next call, so the client gets every token before the error."""
        if not self._emitted or not preceding:
            raise error
        self._error = error
        return preceding

    def _event(self, event: bytes) -> bytes:
        payload = event_data(event)
        if payload is None:
            return b""  # comments and keep-alives are not forwarded
        if payload == b"[DONE]":
            self.done = True
            return DONE
        if payload.find(b'"error"') >= 0:
            # An error reported inside the stream: the provider failed after it started answering.
            # OpenRouter puts it beside a chunk's other fields, not only alone.
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise UpstreamProtocolError("The provider sent a stream event that is not JSON.") from None
            if isinstance(data, dict) and data.get("error"):
                raise openai_error(502, orjson.dumps({"error": data["error"]}), {}, provider="openai")
        # Only the few chunks that carry usage or a finish reason are parsed; the rest pass as bytes.
        has_usage = b'"usage":{' in payload or b'"usage": {' in payload
        if has_usage or b'"finish_reason":"' in payload or b'"finish_reason": "' in payload:
            chunk = load_json_object(payload)
            self._note_finish(chunk)
            if has_usage:
                self.usage = usage_from(chunk.get("usage"))
                if not self._keep_usage_chunk:
                    # The gateway asked for usage on the client's behalf: the client gets none.
                    if not chunk.get("choices"):
                        return b""
                    chunk.pop("usage", None)
                    return sse(orjson.dumps(chunk))
        if not self._keep_usage_chunk and b'"usage":' in payload:
            return sse(_strip_usage_null(payload))
        return event + b"\n\n"

    def _note_finish(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = reason


def _without_thinking_blocks(messages: list[Any]) -> list[Any] | None:
    """The messages without the gateway's `thinking_blocks`; None when no message carries them (a
    loop, not any() over a generator: this runs on every call, over every message)."""
    for message in messages:
        if isinstance(message, dict) and "thinking_blocks" in message:
            return [{k: v for k, v in m.items() if k != "thinking_blocks"} if isinstance(m, dict) else m
                    for m in messages]
    return None


def is_error_event(payload: bytes) -> bool:
    """Whether an event's JSON object carries a top-level `error` (however the JSON is spaced or
    ordered); a chunk that merely mentions the word is not one."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("error") is not None


def _strip_usage_null(data: bytes) -> bytes:
    """Drop the `"usage": null` each chunk carries once usage is requested: the client did not ask
    for usage (the gateway did, for accounting). Compact JSON, or spaced with or without a space
    after commas."""
    data = data.replace(b',"usage":null', b"")
    if data.find(b'"usage": null') >= 0:
        data = data.replace(b', "usage": null', b"").replace(b',"usage": null', b"")
    return data



def usage_from(raw: object) -> Usage | None:
    """OpenAI `usage` → Usage (cached prompt tokens from `prompt_tokens_details`)."""
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    if isinstance(details, dict) and details.get("cached_tokens") is not None:
        cached = token_count(details, "cached_tokens")
    else:  # DeepSeek reports its prompt-cache reads in its own field.
        cached = token_count(raw, "prompt_cache_hit_tokens")
    completion = raw.get("completion_tokens_details")
    return Usage(
        prompt_tokens=token_count(raw, "prompt_tokens"),
        completion_tokens=token_count(raw, "completion_tokens"),
        cached_tokens=cached,
        reasoning_tokens=token_count(completion, "reasoning_tokens") if isinstance(completion, dict) else 0,
    )


def openai_error(status: int, body: bytes, headers: Mapping[str, str], *, provider: str) -> GatewayError:
    """An OpenAI-shaped error answer → the gateway's error, keeping the provider's message."""
    message, error_type, code, param = f"The provider answered HTTP {status}.", None, None, None
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            error_type = error.get("type") if isinstance(error.get("type"), str) else None
            code = str(error["code"]) if error.get("code") is not None else None
            param = error.get("param") if isinstance(error.get("param"), str) else None
        elif isinstance(error, str):
            message = error
    elif body:
        message = f"{message} {body[:200].decode('utf-8', 'replace')}"
    if code == "context_length_exceeded":
        return ContextLengthExceededError(message, param=param)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None and headers.get("retry-after-ms"):
        retry_after = parse_retry_after(headers.get("retry-after-ms"), unit=0.001)
    out_headers = {"retry-after": headers["retry-after"]} if "retry-after" in headers else None
    return UpstreamError(message, status=status, error_type=error_type, code=code, param=param,
                         headers=out_headers, retry_after=retry_after, provider=provider)
