"""Faithful conversion between a complete answer and its stream, so an entry stored in one form
serves a client that asked for the other: `chat.completion` ↔ `chat.completion.chunk` (content,
refusal, reasoning text, tool calls, logprobs, finish reasons, usage, every choice) and the legacy
`text_completion` form."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.providers.sse import event_data, sse

_BASE_FIELDS = ("id", "created", "model", "system_fingerprint", "service_tier")


def stream_to_completion(events: bytes, usage_event: bytes) -> bytes:
    """Stored SSE events (and the usage chunk, if any) → the JSON body of the complete answer."""
    chunks = [orjson.loads(p) for e in events.split(b"\n\n") if e and (p := event_data(e)) is not None
              and p != b"[DONE]"]
    usage = None
    if usage_event:
        payload = event_data(usage_event.strip())
        usage = orjson.loads(payload)["usage"] if payload else None
    return orjson.dumps(assemble(chunks, usage))


def assemble(chunks: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    first = chunks[0] if chunks else {}
    chat = first.get("object") == "chat.completion.chunk"
    out: dict[str, Any] = {"id": first.get("id"), "object": "chat.completion" if chat else "text_completion"}
    for name in _BASE_FIELDS[1:]:
        if name in first:
            out[name] = first[name]
    choices: dict[int, dict[str, Any]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index", 0))
            slot = choices.get(index)
            if slot is None:
                slot = choices[index] = {"index": index}
                if chat:
                    slot["message"] = {"role": "assistant", "content": None}
                else:
                    slot["text"] = ""
                slot["logprobs"] = None
                slot["finish_reason"] = None
            if chat:
                _merge_delta(slot["message"], choice.get("delta") or {}, calls.setdefault(index, {}))
            elif isinstance(choice.get("text"), str):
                slot["text"] += choice["text"]
            _merge_logprobs(slot, choice.get("logprobs"))
            if choice.get("finish_reason") is not None:
                slot["finish_reason"] = choice["finish_reason"]
    for index, slot in choices.items():
        if calls.get(index):
            slot["message"]["tool_calls"] = [calls[index][i] for i in sorted(calls[index])]
    out["choices"] = [choices[i] for i in sorted(choices)]
    if usage is not None:
        out["usage"] = usage
    return out


def _merge_delta(message: dict[str, Any], delta: dict[str, Any], calls: dict[int, dict[str, Any]]) -> None:
    for name, value in delta.items():
        if name == "tool_calls":
            for call in value or ():
                slot = calls.get(int(call.get("index", 0)))
                if slot is None:
                    slot = calls[int(call.get("index", 0))] = {"id": None, "type": "function",
                                                               "function": {"name": "", "arguments": ""}}
                if call.get("id"):
                    slot["id"] = call["id"]
                if call.get("type"):
                    slot["type"] = call["type"]
                function = call.get("function") or {}
                for part in ("name", "arguments"):
                    if isinstance(function.get(part), str):
                        slot["function"][part] += function[part]
        elif name == "role":
            if value:
                message["role"] = value
        elif isinstance(value, str):
            message[name] = (message.get(name) or "") + value
        elif value is not None:
            message[name] = value
        else:
            message.setdefault(name, None)


def _merge_logprobs(slot: dict[str, Any], logprobs: Any) -> None:
    if not isinstance(logprobs, dict):
        return
    current = slot["logprobs"]
    if current is None:
        slot["logprobs"] = {k: list(v) if isinstance(v, list) else v for k, v in logprobs.items()}
        return
    for name, value in logprobs.items():
        if isinstance(value, list) and isinstance(current.get(name), list):
            current[name].extend(value)
        elif name not in current or current[name] is None:
            current[name] = value


def completion_to_stream(body: bytes) -> tuple[bytes, bytes]:
    """The JSON body of a complete answer → (SSE events without `[DONE]`, the usage chunk event)."""
    data = orjson.loads(body)
    chat = data.get("object") == "chat.completion"
    base: dict[str, Any] = {"id": data.get("id"), "object": "chat.completion.chunk" if chat else "text_completion"}
    for name in _BASE_FIELDS[1:]:
        if name in data:
            base[name] = data[name]
    events: list[bytes] = []
    for choice in data.get("choices") or ():
        index = choice.get("index", 0)
        if chat:
            message = dict(choice.get("message") or {})
            delta: dict[str, Any] = {"role": message.pop("role", "assistant")}
            content = message.pop("content", None)
            tool_calls = message.pop("tool_calls", None)
            delta["content"] = content
            delta.update(message)
            if tool_calls:
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(tool_calls)]
            body_choice: dict[str, Any] = {"index": index, "delta": delta}
            end: dict[str, Any] = {"index": index, "delta": {}}
        else:
            body_choice = {"index": index, "text": choice.get("text", "")}
            end = {"index": index, "text": ""}
        body_choice["logprobs"] = choice.get("logprobs")
        body_choice["finish_reason"] = None
        end["logprobs"] = None
        end["finish_reason"] = choice.get("finish_reason")
        events.append(sse(orjson.dumps({**base, "choices": [body_choice]})))
        events.append(sse(orjson.dumps({**base, "choices": [end]})))
    usage_event = b""
    if data.get("usage") is not None:
        usage_event = sse(orjson.dumps({**base, "choices": [], "usage": data["usage"]}))
    return b"".join(events), usage_event
