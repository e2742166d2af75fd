"""AWS Bedrock, through the Converse API (`POST /model/{modelId}/converse` and `/converse-stream`).

Request: OpenAI chat → Converse. System/developer messages → `system: [{text}]` (all of them, in
order); user/assistant messages → content blocks (text; images from `data:` URLs as raw base64
bytes; assistant `tool_calls` → `toolUse`; `tool` messages → `toolResult` blocks in a user message);
consecutive messages of one role are merged, as Converse wants roles to alternate. Sampling →
`inferenceConfig`; `tools`/`tool_choice` → `toolConfig`. A non-standard body field
`additional_model_request_fields` (e.g. `{"top_k": 50}`) passes to `additionalModelRequestFields`.
Parameters Converse cannot honour (n>1, logprobs, penalties, seed, logit_bias, response_format JSON
modes, parallel_tool_calls=false, audio) are a 400 naming the parameter, or are dropped when
`drop_unsupported_params` is set (constructor default, overridable per call in `build_request`).

Converse answers carry neither an id nor the model name: ids are generated (`chatcmpl-…`) and the
model is the one passed to `parse_response` / `stream_translator` (`model=` keyword, optional).

Usage: Converse's `inputTokens` excludes cache reads and writes, so OpenAI `prompt_tokens` =
inputTokens + cacheReadInputTokens + cacheWriteInputTokens, with `prompt_tokens_details.cached_tokens`
= cacheReadInputTokens.

Streams are AWS event-stream frames, decoded by botocore (imported lazily: the rest of the gateway
runs without the `bedrock` extra); see `gateway.providers.bedrock_stream`.
"""

from __future__ import annotations

import base64
import binascii
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
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
# OpenAI parameters Converse has no equivalent for (a falsy value is no request at all).
_UNSUPPORTED = ("logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "seed",
                "logit_bias", "audio", "modalities", "prediction")
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
        converse = to_converse(body, drop=drop)
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
# OpenAI request → Converse request
# ---------------------------------------------------------------------------------------------


def _unsupported(param: str, why: str = "is not supported by Bedrock") -> InvalidRequestError:
    return InvalidRequestError(f"Unsupported parameter: '{param}' {why}.", code="unsupported_parameter",
                               param=param)


def to_converse(body: dict[str, Any], *, drop: bool = False) -> dict[str, Any]:
    for param in _UNSUPPORTED:
        if body.get(param) and not drop:
            raise _unsupported(param)
    if (body.get("n") or 1) > 1 and not drop:
        raise _unsupported("n", "must be 1 for Bedrock")
    if body.get("parallel_tool_calls") is False and not drop:
        raise _unsupported("parallel_tool_calls", "cannot be disabled on Bedrock")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text") and not drop:
        raise InvalidRequestError(
            f"Unsupported value: 'response_format' of type '{response_format.get('type')}' is not "
            "supported by Bedrock.", code="unsupported_value", param="response_format")

    system, messages = _messages(body["messages"])
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        inference["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        inference["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if inference:
        out["inferenceConfig"] = inference
    tool_config = _tool_config(body, messages, drop)
    if tool_config:
        out["toolConfig"] = tool_config
    extra = body.get("additional_model_request_fields")
    if isinstance(extra, dict) and extra:
        out["additionalModelRequestFields"] = extra
    return out


def _messages(raw: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    system: list[dict[str, str]] = []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        role = message.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(message.get("content"), where) if text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
            bedrock_role = "user"
        elif role == "assistant":
            blocks = [{"text": t} for t in _texts(message.get("content"), where) if t]
            blocks.extend(_tool_use(call, f"{where}.tool_calls[{j}]")
                          for j, call in enumerate(message.get("tool_calls") or ()))
            bedrock_role = "assistant"
        elif role == "tool":
            text = "".join(_texts(message.get("content"), where))
            blocks = [{"toolResult": {"toolUseId": message.get("tool_call_id") or "",
                                      "content": [{"text": text}]}}]
            bedrock_role = "user"
        else:
            raise _unsupported(f"{where}.role", f"'{role}' is not supported by Bedrock; use 'tool'")
        if messages and messages[-1]["role"] == bedrock_role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": bedrock_role, "content": blocks})
    return system, messages


def _texts(content: object, where: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for j, part in enumerate(content if isinstance(content, list) else ()):
        if part.get("type") != "text":
            raise _unsupported(f"{where}.content[{j}].type", f"'{part.get('type')}' is not allowed here")
        texts.append(str(part.get("text") or ""))
    return texts


def _user_blocks(content: object, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content if isinstance(content, list) else ()):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            blocks.append({"image": _image(str(image.get("url") or ""), f"{where}.content[{j}].image_url")})
        else:
            raise _unsupported(f"{where}.content[{j}].type", f"'{kind}' is not supported by Bedrock")
    return blocks


def _image(url: str, param: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        raise _unsupported(param, "must be a data: URL (base64) for Bedrock; image links are not fetched")
    header, _, data = url[5:].partition(",")
    mime, _, encoding = header.partition(";")
    fmt = _IMAGE_FORMATS.get(mime.lower())
    if fmt is None or encoding != "base64":
        raise InvalidRequestError(f"Invalid image: '{param}' must be a base64 png/jpeg/gif/webp data URL.",
                                  code="invalid_image_format", param=param)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"Invalid image: '{param}' is not valid base64.",
                                  code="invalid_image_format", param=param) from None
    return {"format": fmt, "source": {"bytes": data}}


def _tool_use(call: dict[str, Any], where: str) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(f"Invalid value for '{where}.function.arguments': not valid JSON.",
                                  code="invalid_value", param=f"{where}.function.arguments") from None
    return {"toolUse": {"toolUseId": call.get("id") or "", "name": function.get("name") or "",
                        "input": parsed}}


def _tool_config(body: dict[str, Any], messages: list[dict[str, Any]], drop: bool) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools:
        return None
    if choice == "none":
        uses_tools = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
        if not uses_tools:
            return None  # no tools offered: the model cannot call one
        if not drop:
            raise _unsupported("tool_choice", "'none' cannot be expressed on Bedrock once tools were used")
        choice = "auto"
    specs = []
    for tool in tools:
        function = tool.get("function") or {}
        spec: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["inputSchema"] = {"json": function.get("parameters") or {"type": "object", "properties": {}}}
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise InvalidRequestError("Invalid value for 'tool_choice': a function name is required.",
                                      code="invalid_value", param="tool_choice")
        config["toolChoice"] = {"tool": {"name": name}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


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
    for block in message.get("content") or ():
        if "text" in block:
            texts.append(str(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId"), "type": "function",
                          "function": {"name": use.get("name"),
                                       "arguments": orjson.dumps(use.get("input", {})).decode()}})
    content = "".join(texts) if texts or not calls else None
    out_message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
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
