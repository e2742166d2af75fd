"""AWS Bedrock, through the Converse API (`POST /model/{modelId}/converse` and `/converse-stream`).

Request: OpenAI chat → Converse (bedrock_request.py). System/developer messages → `system: [{text}]` (all of them, in
order); user/assistant messages → content blocks (text; images from `data:` URLs as raw base64
bytes; assistant `tool_calls` → `toolUse`; `tool` messages → `toolResult` blocks in a user message);
consecutive messages of one role are merged, as Converse wants roles to alternate. Sampling →
`inferenceConfig`; `tools`/`tool_choice` → `toolConfig`. A non-standard body field
`additional_model_request_fields` (e.g. `{"top_k": 50}`) passes to `additionalModelRequestFields`.
Parameters Converse cannot honour (n>1, logprobs, penalties, seed, logit_bias, response_format JSON
modes, parallel_tool_calls=false, audio) are a 400 naming the parameter, or are dropped when
`drop_unsupported_params` is set (constructor default, overridable per call in `build_request`).

Answers: text blocks are joined, `toolUse` blocks become tool calls, `reasoningContent` becomes
`reasoning_content` and (when signed, or redacted) `thinking_blocks`, for the next turn.
Converse answers carry neither an id nor the model name: ids are generated (`chatcmpl-…`) and the
model is the one passed to `parse_response` / `stream_translator` (`model=` keyword, optional).

Usage: Converse's `inputTokens` excludes cache reads and writes, so OpenAI `prompt_tokens` =
inputTokens + cacheReadInputTokens + cacheWriteInputTokens, with `prompt_tokens_details.cached_tokens`
= cacheReadInputTokens.

Streams are AWS event-stream frames, decoded by botocore (imported lazily: the rest of the gateway
runs without the `bedrock` extra); see `gateway.providers.bedrock_stream`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from gateway.context import Usage
from gateway.errors import (
    ContextLengthExceededError,
    GatewayError,
    InvalidRequestError,
    UpstreamError,
    UpstreamProtocolError,
    parse_retry_after,
)
from gateway.providers.base import Capabilities, ParsedResponse, UpstreamRequest, load_json_object, usage_with_cache
from gateway.providers.bedrock_request import to_converse
from gateway.providers.reasoning import reasoning_fields
from gateway.schemas import Operation

if TYPE_CHECKING:
    from gateway.providers.bedrock_stream import BedrockStream

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# x-amzn-ErrorType / stream exception type (case-insensitive) → HTTP status.
ERROR_STATUS = {
    "throttlingexception": 429,
    "validationexception": 400,
    "accessdeniedexception": 403,
    "unrecognizedclientexception": 403,
    "resourcenotfoundexception": 404,
    "modeltimeoutexception": 408,
    "modelnotreadyexception": 429,
    "servicequotaexceededexception": 429,
    "modelerrorexception": 424,
    "modelstreamerrorexception": 424,
    "serviceunavailableexception": 503,
    "internalserverexception": 500,
}

_CONTEXT = re.compile(
    r"too long|too many (input )?tokens|maximum context length|context (length|window)|max(imum)?[ _]?tokens",
    re.IGNORECASE)
_JSON = {"content-type": "application/json", "accept": "application/json"}
_STREAM = {"content-type": "application/json", "accept": "application/vnd.amazon.eventstream"}


class BedrockAdapter:
    capabilities = Capabilities(operations=frozenset({Operation.CHAT}))

    def __init__(self, region: str = "us-east-1", base_url: str | None = None,
                 headers: Mapping[str, str] | None = None, *, drop_unsupported_params: bool = False) -> None:
        self.region = region
        self.base_url = (base_url or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")
        self.drop_unsupported_params = drop_unsupported_params
        self._headers = dict(headers or {})
        self._signing = {"service": "bedrock", "region": region}

    def url(self, model: str, *, stream: bool) -> str:
        # The model id is one path segment: `/` (ARNs) and anything unusual percent-encoded. `:` stays
        # as is (legal in a path): HTTP clients such as aiohttp/yarl decode `%3A` before sending, and
        # the SigV4 signature must cover the path exactly as it goes on the wire.
        segment = quote(model, safe=":")
        return f"{self.base_url}/model/{segment}/{'converse-stream' if stream else 'converse'}"

    def build_request(
        self, operation: Operation, body: dict[str, Any], model: str, *, stream: bool,
        drop_unsupported_params: bool | None = None,
    ) -> UpstreamRequest:
        if operation is not Operation.CHAT:
            raise InvalidRequestError(f"Bedrock (Converse) does not serve the {operation.value} endpoint.",
                                      code="unsupported_operation")
        drop = self.drop_unsupported_params if drop_unsupported_params is None else drop_unsupported_params
        converse = to_converse(body, drop=drop, model=model)
        headers = {**(_STREAM if stream else _JSON), **self._headers}
        return UpstreamRequest("POST", self.url(model, stream=stream), headers, orjson.dumps(converse),
                               stream, signing=dict(self._signing))

    def parse_response(self, operation: Operation, status: int, body: bytes, *,
                       request: Mapping[str, Any] | None = None, model: str | None = None) -> ParsedResponse:
        model = model or "bedrock"
        raw = load_json_object(body, "Bedrock")
        data = from_converse(raw, model)
        return ParsedResponse(data=data, body=orjson.dumps(data), usage=usage_from(raw.get("usage")))

    def stream_translator(self, operation: Operation, *, client_wants_usage: bool,
                          model: str | None = None) -> BedrockStream:
        model = model or "bedrock"
        from gateway.providers.bedrock_stream import BedrockStream

        return BedrockStream(client_wants_usage, model=model)

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        error_type = _header(headers, "x-amzn-errortype") or ""
        message = f"Bedrock answered HTTP {status}."
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            message = str(data.get("message") or data.get("Message") or message)
            error_type = error_type or str(data.get("__type") or "")
        elif body:
            message = f"{message} {body[:200].decode('utf-8', 'replace')}"
        return bedrock_error(error_type, message, status, headers)


def bedrock_error(error_type: str, message: str, status: int | None = None,
                  headers: Mapping[str, str] | None = None) -> GatewayError:
    """An AWS error type (`ThrottlingException:http://…` or a stream's `throttlingException`) and
    message → the gateway's error."""
    name = error_type.split(":", 1)[0].split("#")[-1].strip()
    known = ERROR_STATUS.get(name.lower())
    http_status = known or status or 502
    if http_status == 400 and _CONTEXT.search(message):
        return ContextLengthExceededError(message, param="messages")
    raw_retry = _header(headers or {}, "retry-after")
    retry_after = parse_retry_after(raw_retry)
    out_headers = {"retry-after": raw_retry} if raw_retry and retry_after is not None else None
    return UpstreamError(message, status=http_status, code=name[:1].upper() + name[1:] if name else None,
                         headers=out_headers, retry_after=retry_after, provider="bedrock")


# ---------------------------------------------------------------------------------------------
# Converse response → OpenAI chat.completion
# ---------------------------------------------------------------------------------------------


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def from_converse(data: dict[str, Any], model: str, *, response_id: str | None = None,
                  created: int | None = None) -> dict[str, Any]:
    output = data.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict):
        raise UpstreamProtocolError("Bedrock answered without output.message.")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thoughts: list[str] = []
    thinking: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if "text" in block:
            texts.append(str(block["text"]))
        elif isinstance(block.get("reasoningContent"), dict):
            reasoning = block["reasoningContent"]
            signed = reasoning.get("reasoningText")
            if isinstance(signed, dict):
                thoughts.append(str(signed.get("text") or ""))
                if signed.get("signature"):
                    thinking.append({"type": "thinking", "thinking": str(signed.get("text") or ""),
                                     "signature": str(signed["signature"])})
            elif reasoning.get("redactedContent"):
                thinking.append({"type": "redacted_thinking", "data": str(reasoning["redactedContent"])})
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId"), "type": "function",
                          "function": {"name": use.get("name"),
                                       "arguments": orjson.dumps(use.get("input", {})).decode()}})
    content = "".join(texts) if texts or not calls else None
    out_message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None,
                                   **reasoning_fields(thoughts, thinking)}
    if calls:
        out_message["tool_calls"] = calls
    result: dict[str, Any] = {
        "id": response_id or new_id(), "object": "chat.completion",
        "created": int(time.time()) if created is None else created, "model": model,
        "choices": [{"index": 0, "message": out_message, "logprobs": None,
                     "finish_reason": finish_reason(data.get("stopReason"))}],
    }
    usage = usage_from(data.get("usage"))
    if usage is not None:
        result["usage"] = usage.to_openai()
    return result


def finish_reason(stop_reason: object) -> str:
    return STOP_REASONS.get(str(stop_reason), "stop")


def usage_from(raw: object) -> Usage | None:
    """Converse usage → Usage (inputTokens exclude cache reads and writes)."""
    return usage_with_cache(raw, uncached="inputTokens", output="outputTokens",
                            cache_read="cacheReadInputTokens", cache_write="cacheWriteInputTokens")




def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value
