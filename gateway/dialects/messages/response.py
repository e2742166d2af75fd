"""A canonical (OpenAI) ChatCompletion → a Messages `message` object.

- Content, in Anthropic's order: thinking (the `thinking_blocks` as they came, signatures and
  redacted blocks included; or, from a provider without signatures, `reasoning_content` as one
  thinking block with an empty signature), then the text, then one `tool_use` per tool call.
- A tool call's Gemini thought signature rides in its `tool_use` id (see signatures.py).
- A tool call's `arguments` that are not a JSON object (cut or malformed by the model) become
  `input: {}`: the client's tool then reports its missing parameters to the model, which retries,
  instead of the whole answer failing.
- `stop_reason`: stop → end_turn (stop_sequence when the provider said which of the request's
  `stop_sequences` matched, as vLLM does in `choices[i].stop_reason`), length → max_tokens,
  tool_calls → tool_use (also when a provider said stop beside tool calls), content_filter → refusal.
- `usage.input_tokens` is the uncached part: canonical prompt tokens count cache reads and writes,
  Anthropic lists them apart.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.messages.signatures import tool_use_id
from gateway.ids import UniqueIds

MESSAGE_IDS = UniqueIds("msg_gw")
TOOL_USE_IDS = UniqueIds("toolu_gw")

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                 "function_call": "tool_use", "content_filter": "refusal"}


def encode_response(completion: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    choices = completion.get("choices") or [{}]
    choice = as_dict(choices[0])
    message = as_dict(choice.get("message"))
    content = thinking_of(message)
    text = message.get("content")
    if isinstance(text, list):  # a provider that answers in parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if not text and isinstance(message.get("refusal"), str):
        text = message["refusal"]
    if text:
        content.append({"type": "text", "text": text})
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    for call in calls:
        function = as_dict(call.get("function"))
        content.append({"type": "tool_use", "id": tool_use_id(call, call.get("id") or TOOL_USE_IDS()),
                        "name": function.get("name") or "", "input": tool_input(function.get("arguments"))})
    reason, sequence = stop_reason(choice, request, tool_calls=bool(calls))
    return {"id": MESSAGE_IDS(), "type": "message", "role": "assistant", "model": request.get("model"),
            "content": content, "stop_reason": reason, "stop_sequence": sequence,
            "usage": messages_usage(completion.get("usage"))}


def thinking_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("thinking_blocks")
    if isinstance(blocks, list) and blocks:
        return [b for b in blocks if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        return [{"type": "thinking", "thinking": reasoning, "signature": ""}]
    return []


def tool_input(arguments: object) -> dict[str, Any]:
    if not isinstance(arguments, str) or not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def stop_reason(choice: dict[str, Any], request: dict[str, Any], *, tool_calls: bool) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) of a canonical choice."""
    finish = choice.get("finish_reason")
    if tool_calls and finish in (None, "stop"):
        return "tool_use", None
    matched = choice.get("stop_reason")
    sequences = request.get("stop_sequences")
    if finish == "stop" and isinstance(matched, str) and isinstance(sequences, list) and matched in sequences:
        return "stop_sequence", matched
    return _STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn", None


def messages_usage(usage: object) -> dict[str, Any]:
    """Anthropic's usage from the canonical one (zeros when the provider reported none)."""
    usage = as_dict(usage)
    prompt = _int(usage.get("prompt_tokens"))
    details = as_dict(usage.get("prompt_tokens_details"))
    cached = _int(details.get("cached_tokens"))
    written = _int(details.get("cache_write_tokens"))
    out: dict[str, Any] = {"input_tokens": max(0, prompt - cached - written),
                           "cache_creation_input_tokens": written, "cache_read_input_tokens": cached,
                           "output_tokens": _int(usage.get("completion_tokens"))}
    completion_details = usage.get("completion_tokens_details")
    if isinstance(completion_details, dict) and isinstance(completion_details.get("reasoning_tokens"), int):
        out["output_tokens_details"] = {"thinking_tokens": completion_details["reasoning_tokens"]}
    return out


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
