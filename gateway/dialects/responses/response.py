"""A canonical ChatCompletion → the Responses `Response` object, and the pieces the stream encoder
shares with it (the echoed request fields, item ids, usage, status).

Reasoning items carry their text as summaries when the request's `reasoning.summary` asks, and
`encrypted_content` (the canonical `thinking_blocks`, see reasoning.py) when
the request's `include` asks for `reasoning.encrypted_content`, and also when the response is stored
(`store` is not false): the stored copy is what a `previous_response_id` turn is rebuilt from, and
a provider that signs its reasoning needs the blocks back. The SDKs type the field as optional."""

from __future__ import annotations

from typing import Any

from gateway.dialects.responses.reasoning import encode_reasoning
from gateway.dialects.responses.tools import ToolMap, convert_tools

ENCRYPTED_REASONING = "reasoning.encrypted_content"


class ItemIds:
    """Output item ids derived from the response id, so the stream and the final object agree."""

    __slots__ = ("_count", "_suffix")

    def __init__(self, response_id: str) -> None:
        self._suffix = response_id.removeprefix("resp_")
        self._count = 0

    def __call__(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._suffix}{self._count:03x}"


def tool_map(request: dict[str, Any]) -> ToolMap:
    return convert_tools(request.get("tools"), drop_builtin=True)[1]


def keeps_reasoning(request: dict[str, Any]) -> bool:
    include = request.get("include")
    asked = isinstance(include, list) and ENCRYPTED_REASONING in include
    return asked or request.get("store") is not False


def wants_summaries(request: dict[str, Any]) -> bool:
    """Reasoning text goes out as summaries only when `reasoning.summary` asks (auto, concise or
    detailed), as the Responses API does; otherwise reasoning items carry no text."""
    reasoning = request.get("reasoning")
    return isinstance(reasoning, dict) and reasoning.get("summary") is not None


def status_of(finish_reason: object) -> tuple[str, dict[str, str] | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def usage_object(usage: object) -> dict[str, Any] | None:
    """Canonical usage → Responses usage (input counts cached tokens too, as both APIs count them)."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(prompt_details.get("cached_tokens") or 0),
                                 "cache_write_tokens": int(prompt_details.get("cache_write_tokens") or 0)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(completion_details.get("reasoning_tokens") or 0)},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def base_response(request: dict[str, Any], *, response_id: str, created_at: int, model: str,
                  status: str) -> dict[str, Any]:
    """The response object with every echoed request field, no output and no usage yet."""
    reasoning = request.get("reasoning") if isinstance(request.get("reasoning"), dict) else {}
    text = request.get("text") if isinstance(request.get("text"), dict) else {}
    assert isinstance(reasoning, dict) and isinstance(text, dict)
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "model": model,
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": request.get("service_tier") or "default",
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity", "medium")},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_logprobs": request.get("top_logprobs", 0),
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def reasoning_item(item_id: str, text: str, blocks: list[dict[str, Any]], signatures: dict[str, str], *,
                   keep: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": text}] if text else []}
    if (blocks or signatures) and keep:
        item["encrypted_content"] = encode_reasoning(blocks, signatures)
    return item


def thought_signature(call: dict[str, Any]) -> str | None:
    """A canonical tool call's Gemini thought signature (`extra_content.google.thought_signature`)."""
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) else None


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id: str, call: dict[str, Any], names: ToolMap, *, status: str) -> dict[str, Any]:
    function = call.get("function") or {}
    item = names.call_item(str(function.get("name") or ""), str(function.get("arguments") or ""))
    item["id"] = item_id.replace("fc_", "ctc_", 1) if item["type"] == "custom_tool_call" else item_id
    item["call_id"] = call.get("id") or item["id"]
    item["status"] = status
    return item


def encode_response(completion: dict[str, Any], request: dict[str, Any], *, response_id: str,
                    created_at: int) -> dict[str, Any]:
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    status, incomplete = status_of(choice.get("finish_reason"))
    item_status = "incomplete" if status == "incomplete" else "completed"
    response = base_response(request, response_id=response_id, created_at=created_at,
                             model=completion.get("model") or request.get("model", ""), status=status)
    response["incomplete_details"] = incomplete
    ids = ItemIds(response_id)
    output: list[dict[str, Any]] = response["output"]
    reasoning_text = (message.get("reasoning_content") or "") if wants_summaries(request) else ""
    blocks = message.get("thinking_blocks") or []
    calls = message.get("tool_calls") or []
    keep = keeps_reasoning(request)
    signatures = {call.get("id"): signature for call in calls if (signature := thought_signature(call))}
    if reasoning_text or blocks or message.get("reasoning_content") or (signatures and keep):
        output.append(reasoning_item(ids("rs"), reasoning_text, blocks, signatures, keep=keep))
    content, refusal = message.get("content"), message.get("refusal")
    if content or refusal:
        parts = [text_part(content)] if content else []
        if refusal:
            parts.append({"type": "refusal", "refusal": refusal})
        output.append({"id": ids("msg"), "type": "message", "status": item_status, "role": "assistant",
                       "content": parts})
    if calls:
        names = tool_map(request)
        output.extend(call_item(ids("fc"), call, names, status="completed") for call in calls)
    response["usage"] = usage_object(completion.get("usage"))
    return response
