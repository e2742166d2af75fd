"""Google Gemini: the Generative Language API (API key) and Vertex AI (bearer token).

Requests are translated by `gemini_request`; this module holds the adapter, the answers (complete and
streamed) and the error mapping. Notes:
- Streams use `:streamGenerateContent?alt=sse`: every event is a whole GenerateContentResponse holding
  the new text since the previous one. There is no end marker: a candidate's `finishReason` counts
  as the end (`done`), and events after it (usage only) are still read until EOF.
- Tool call ids are made up (Gemini has none): `call_<n>_<hash of response id, candidate, name, args>`,
  the same for a streamed and a complete answer. Tool results find their function name through them.
- Usage: prompt = promptTokenCount (+ toolUsePromptTokenCount), of which cachedContentTokenCount are
  cached; completion = candidatesTokenCount + thoughtsTokenCount (thinking is billed as output), of
  which thoughtsTokenCount are reasoning tokens.
- Thought summaries (`thought: true` parts) are `reasoning_content`; a function call's
  `thoughtSignature` is the tool call's `extra_content.google.thought_signature` (Google's own
  OpenAI-compatible form), which the client sends back on the next turn.
- A blocked prompt (promptFeedback.blockReason) or answer (FINISH_REASONS) is `content_filter`, with
  Google's explanation as the message's `refusal`.
- Embeddings on the Generative Language API report no usage: it is estimated (4 characters a token,
  `Usage.estimated`) when the caller passes the OpenAI request to `parse_response(request=...)`.
  Vertex AI embeddings (`:predict`) report real token counts.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from gateway.context import Usage
from gateway.errors import (
    ContextLengthExceededError,
    GatewayError,
    InvalidRequestError,
    UpstreamError,
    parse_retry_after,
)
from gateway.providers.base import Capabilities, ParsedResponse, UpstreamRequest, load_json_object, token_count
from gateway.providers.gemini_request import (
    chat_body,
    embedding_inputs,
    embeddings_body,
    unsupported_handler,
)
from gateway.providers.sse import DONE, SSESplitter, event_data, sse
from gateway.schemas import Operation

GEMINI_URL = "https://generativelanguage.googleapis.com"

# Every reason Google documents for a blocked answer (Gemini API and Vertex AI, whose Model Armor
# templates end an answer with MODEL_ARMOR) is a content filter; anything else (OTHER, LANGUAGE,
# MALFORMED_FUNCTION_CALL, …) → "stop".
FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter", "MODEL_ARMOR": "content_filter", "JAILBREAK": "content_filter",
}

STATUS_CODES = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ABORTED": 409, "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500, "UNKNOWN": 500, "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}

_CONTEXT_MARKERS = ("exceeds the maximum number of tokens", "input token count", "context length")
_JSON_HEADERS = {"content-type": "application/json"}


class GeminiAdapter:
    capabilities = Capabilities(operations=frozenset({Operation.CHAT, Operation.EMBEDDINGS}))

    def __init__(self, base_url: str | None = None, *, headers: Mapping[str, str] | None = None,
                 vertex_project: str | None = None, vertex_location: str | None = None,
                 drop_unsupported_params: bool = False) -> None:
        self.vertex = vertex_project is not None
        if self.vertex:
            location = vertex_location or "us-central1"
            host = "https://aiplatform.googleapis.com" if location == "global" \
                else f"https://{location}-aiplatform.googleapis.com"
            self._prefix = (f"{(base_url or host).rstrip('/')}/v1/projects/{vertex_project}"
                            f"/locations/{location}/publishers/google/models/")
        else:
            self._prefix = f"{(base_url or GEMINI_URL).rstrip('/')}/v1beta/models/"
        self._headers = {**_JSON_HEADERS, **(headers or {})}
        self.drop_unsupported_params = drop_unsupported_params

    def url(self, model: str, method: str) -> str:
        return self._prefix + quote(model.removeprefix("models/"), safe="-._~@") + ":" + method

    def build_request(self, operation: Operation, body: dict[str, Any], model: str, *, stream: bool,
                      drop_unsupported_params: bool | None = None) -> UpstreamRequest:
        """`drop_unsupported_params` (default: the constructor's flag) drops what Gemini cannot honour
        instead of answering 400."""
        drop = self.drop_unsupported_params if drop_unsupported_params is None else drop_unsupported_params
        model = model.removeprefix("models/")
        if operation is Operation.EMBEDDINGS:
            payload = embeddings_body(body, model, vertex=self.vertex)
            url = self.url(model, "predict" if self.vertex else "batchEmbedContents")
            return UpstreamRequest("POST", url, dict(self._headers), orjson.dumps(payload), False)
        if operation is not Operation.CHAT:
            raise InvalidRequestError("Gemini models serve chat completions and embeddings only; use "
                                      "/v1/chat/completions.", code="unsupported_operation")
        payload = chat_body(body, unsupported_handler(drop), model)
        url = self.url(model, "streamGenerateContent?alt=sse" if stream else "generateContent")
        return UpstreamRequest("POST", url, dict(self._headers), orjson.dumps(payload), stream)

    def parse_response(self, operation: Operation, status: int, body: bytes, *,
                       request: Mapping[str, Any] | None = None, model: str | None = None) -> ParsedResponse:
        """`request` (the OpenAI request, optional) lets embeddings honour `encoding_format: base64`
        and estimate usage where Gemini reports none."""
        data = load_json_object(body)
        if operation is Operation.EMBEDDINGS:
            out, usage = embeddings_response(data, request)
        else:
            out = chat_response(data)
            usage = usage_from(data.get("usageMetadata"))
        return ParsedResponse(data=out, body=orjson.dumps(out), usage=usage)

    def stream_translator(self, operation: Operation, *, client_wants_usage: bool,
                          model: str | None = None) -> GeminiStream:
        return GeminiStream(client_wants_usage)

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return gemini_error(status, body, headers)


# --- complete answers ----------------------------------------------------------------------------


def chat_response(data: dict[str, Any]) -> dict[str, Any]:
    response_id = str(data.get("responseId") or uuid.uuid4().hex)
    choices = []
    for position, candidate in enumerate(data.get("candidates") or ()):
        index = int(candidate.get("index", position))
        text, calls, thoughts = _candidate_parts(candidate, response_id, index, 0)
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if thoughts:
            message["reasoning_content"] = thoughts
        if calls:
            message["tool_calls"] = calls
        finish = _finish(candidate.get("finishReason"), bool(calls))
        if finish == "content_filter" and candidate.get("finishMessage"):
            message["refusal"] = str(candidate["finishMessage"])
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
    if not choices:
        # No candidates: the prompt itself was blocked (promptFeedback.blockReason).
        message = {"role": "assistant", "content": ""}
        reason = _block_message(data.get("promptFeedback"))
        if reason:
            message["refusal"] = reason
        choices.append({"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter"})
    out: dict[str, Any] = {
        "id": f"chatcmpl-{response_id}", "object": "chat.completion", "created": int(time.time()),
        "model": str(data.get("modelVersion") or ""), "choices": choices,
    }
    usage = usage_dict(data.get("usageMetadata"))
    if usage is not None:
        out["usage"] = usage
    return out


def _block_message(feedback: object) -> str | None:
    if not isinstance(feedback, dict) or not feedback.get("blockReason"):
        return None
    return str(feedback.get("blockReasonMessage") or f"The prompt was blocked ({feedback['blockReason']}).")


def _candidate_parts(candidate: dict[str, Any], response_id: str, index: int, first_call: int
                     ) -> tuple[str, list[dict[str, Any]], str]:
    """The visible text, the tool calls and the thought summaries of one candidate event."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "text" in part:
            (thoughts if part.get("thought") else texts).append(str(part["text"]))
        elif isinstance(part.get("functionCall"), dict):
            call = tool_call(part["functionCall"], response_id, index, first_call + len(calls))
            if part.get("thoughtSignature"):
                call["extra_content"] = {"google": {"thought_signature": str(part["thoughtSignature"])}}
            calls.append(call)
    return "".join(texts), calls, "".join(thoughts)


def tool_call(call: dict[str, Any], response_id: str, candidate: int, number: int) -> dict[str, Any]:
    name = str(call.get("name", ""))
    arguments = orjson.dumps(call.get("args") or {}).decode()
    call_id = call.get("id")
    if not call_id:
        digest = hashlib.blake2b(f"{response_id}\x00{candidate}\x00{name}\x00{arguments}".encode(),
                                 digest_size=6).hexdigest()
        call_id = f"call_{number}_{digest}"
    return {"id": str(call_id), "type": "function", "function": {"name": name, "arguments": arguments}}


def _finish(reason: object, has_calls: bool) -> str:
    mapped = FINISH_REASONS.get(str(reason), "stop")
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def usage_from(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    thoughts = token_count(raw, "thoughtsTokenCount")
    return Usage(
        prompt_tokens=token_count(raw, "promptTokenCount") + token_count(raw, "toolUsePromptTokenCount"),
        completion_tokens=token_count(raw, "candidatesTokenCount") + thoughts,
        cached_tokens=token_count(raw, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def usage_dict(raw: object) -> dict[str, Any] | None:
    usage = usage_from(raw)
    if usage is None or not isinstance(raw, dict):
        return None
    return {
        "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def embeddings_response(data: dict[str, Any], request: Mapping[str, Any] | None
                        ) -> tuple[dict[str, Any], Usage | None]:
    as_base64 = bool(request and request.get("encoding_format") == "base64")
    usage: Usage | None = None
    if "predictions" in data:  # Vertex AI `predict`
        vectors = [(p.get("embeddings") or {}) for p in data.get("predictions") or ()]
        tokens = sum(token_count(v.get("statistics") or {}, "token_count") for v in vectors)
        values = [v.get("values") or [] for v in vectors]
        usage = Usage(prompt_tokens=tokens)
    else:
        values = [(e or {}).get("values") or [] for e in data.get("embeddings") or ()]
        if request is not None:
            tokens = sum(max(1, -(-len(text) // 4)) for text in embedding_inputs(dict(request)))
            usage = Usage(prompt_tokens=tokens, estimated=True)
    items = []
    for index, vector in enumerate(values):
        embedding: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() \
            if as_base64 else vector
        items.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = usage.prompt_tokens if usage else 0
    model = str(request.get("model") or "") if request else ""
    return ({"object": "list", "data": items, "model": model,
             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, usage)


# --- streams -------------------------------------------------------------------------------------


class GeminiStream:
    """Gemini SSE (one GenerateContentResponse per event) → OpenAI chat.completion.chunk events."""

    __slots__ = ("_calls", "_created", "_id", "_model", "_raw_usage", "_splitter", "_started",
                 "_wants_usage", "done", "finish_reason", "usage")

    def __init__(self, client_wants_usage: bool) -> None:
        self._splitter = SSESplitter()
        self._wants_usage = client_wants_usage
        self._created = int(time.time())
        self._id: str | None = None
        self._model = ""
        self._started: set[int] = set()  # candidates whose first chunk (with the role) went out
        self._calls: dict[int, int] = {}  # candidate → tool calls sent so far
        self._raw_usage: dict[str, Any] | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        return b"".join([self._event(event) for event in self._splitter.feed(data)])

    def finish(self) -> bytes:
        rest = self._splitter.rest()
        out = self._event(rest) if rest else b""
        if not self.done:
            return out  # cut short: no [DONE], so the caller can tell
        if self._wants_usage:
            out += sse(orjson.dumps({**self._envelope(), "choices": [],
                                     "usage": usage_dict(self._raw_usage or {})}))
        return out + DONE

    def _envelope(self) -> dict[str, Any]:
        return {"id": f"chatcmpl-{self._id}", "object": "chat.completion.chunk", "created": self._created,
                "model": self._model}

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {**self._envelope(), "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]}
        if self._wants_usage:
            chunk["usage"] = None
        return sse(orjson.dumps(chunk))

    def _event(self, event: bytes) -> bytes:
        payload = event_data(event)
        if not payload:
            return b""
        data = load_json_object(payload)
        if "error" in data:
            raise gemini_error(200, payload, {})
        if self._id is None:
            self._id = str(data.get("responseId") or uuid.uuid4().hex)
            self._model = str(data.get("modelVersion") or "")
        if isinstance(data.get("usageMetadata"), dict):
            self._raw_usage = data["usageMetadata"]
            self.usage = usage_from(self._raw_usage)
        out: list[bytes] = []
        candidates = data.get("candidates") or ()
        for position, candidate in enumerate(candidates):
            index = int(candidate.get("index", position))
            first = self._calls.get(index, 0)
            text, calls, thoughts = _candidate_parts(candidate, self._id, index, first)
            delta: dict[str, Any] = {}
            if index not in self._started:  # the first chunk carries the role, as OpenAI's does
                self._started.add(index)
                delta = {"role": "assistant", "content": text if text or not calls else None}
            elif text:
                delta["content"] = text
            if thoughts:
                delta["reasoning_content"] = thoughts
            if calls:
                delta["tool_calls"] = [{"index": first + n, **call} for n, call in enumerate(calls)]
                self._calls[index] = first + len(calls)
            if delta:
                out.append(self._chunk(index, delta))
            if candidate.get("finishReason"):
                finish = _finish(candidate["finishReason"], index in self._calls)
                if finish == "content_filter" and candidate.get("finishMessage"):
                    out.append(self._chunk(index, {"refusal": str(candidate["finishMessage"])}))
                self._end(out, index, finish)
        reason = _block_message(data.get("promptFeedback"))
        if not candidates and reason:
            self._started.add(0)
            out.append(self._chunk(0, {"role": "assistant", "content": "", "refusal": reason}))
            self._end(out, 0, "content_filter")
        return b"".join(out)

    def _end(self, out: list[bytes], index: int, reason: str) -> None:
        out.append(self._chunk(index, {}, reason))
        self.finish_reason = reason
        self.done = True


# --- errors --------------------------------------------------------------------------------------


def gemini_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """Google's `{"error": {"code", "message", "status", "details"}}` → the gateway's error."""
    message, google_status, details = f"The provider answered HTTP {status}.", None, []
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:  # the JSON-array framing of streamGenerateContent
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        google_status = error.get("status") if isinstance(error.get("status"), str) else None
        details = [d for d in error.get("details") or () if isinstance(d, dict)]
        code = error.get("code")
        # The status name decides (an error inside a 200 stream has only the body to go by).
        status = STATUS_CODES.get(str(google_status)) or (
            status if status >= 400 else code if isinstance(code, int) and code >= 400 else 502)
    elif body:
        message = f"{message} {body[:200].decode('utf-8', 'replace')}"
    status = status if status >= 400 else 502
    if any(marker in message.lower() for marker in _CONTEXT_MARKERS) and status == 400:
        return ContextLengthExceededError(message, param="messages")
    if any(d.get("reason") == "API_KEY_INVALID" for d in details):
        status = 401  # Google says 400; the gateway's key for the provider is wrong, not the request
    retry_after = parse_retry_after(headers.get("retry-after"))
    for detail in details:
        delay = detail.get("retryDelay")
        if retry_after is None and isinstance(delay, str) and delay.endswith("s"):
            retry_after = parse_retry_after(delay[:-1])
    out_headers = {"retry-after": headers["retry-after"]} if "retry-after" in headers else None
    return UpstreamError(message, status=status, code=google_status.lower() if google_status else None,
                         headers=out_headers, retry_after=retry_after, provider="gemini")
