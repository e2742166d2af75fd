"""Canonical (OpenAI Chat Completions + the agreed extensions) answers for dialect tests: one model
turn described once, rendered as a non-streamed ChatCompletion or as the chunks of its stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

BASE = {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1700000000, "model": "up-model"}


@dataclass
class Call:
    call_id: str
    name: str
    pieces: list[str]
    signature: str | None = None  # a Gemini thought signature (`extra_content`)

    @property
    def extra(self) -> dict[str, Any]:
        return {"extra_content": {"google": {"thought_signature": self.signature}}} if self.signature else {}

    @property
    def arguments(self) -> str:
        return "".join(self.pieces)


@dataclass
class Turn:
    reasoning: list[str] = field(default_factory=list)  # the pieces of one thinking block's text
    signature: str | None = None  # closes the thinking block
    redacted: str | None = None
    text: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    finish: str = "stop"
    usage: dict[str, Any] = field(default_factory=lambda: {
        "prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 4}})

    @property
    def blocks(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.signature is not None:
            out.append({"type": "thinking", "thinking": "".join(self.reasoning), "signature": self.signature})
        if self.redacted is not None:
            out.append({"type": "redacted_thinking", "data": self.redacted})
        return out


def chunks(turn: Turn, *, usage: bool = True) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"reasoning_content": piece}) for piece in turn.reasoning]
    if turn.signature is not None:
        out.append(chunk({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": turn.signature}]}))
    if turn.redacted is not None:
        out.append(chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": turn.redacted}]}))
    out += [chunk({"content": piece}) for piece in turn.text]
    out += [chunk({"refusal": piece}) for piece in turn.refusal]
    for i, call in enumerate(turn.calls):
        out.append(chunk({"tool_calls": [{"index": i, "id": call.call_id, "type": "function",
                                          "function": {"name": call.name, "arguments": ""}, **call.extra}]}))
        out += [chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}) for piece in call.pieces]
    out.append(chunk({}, turn.finish))
    if usage:
        out.append({**BASE, "choices": [], "usage": turn.usage})
    return out


def completion(turn: Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(turn.text) or None}
    if turn.reasoning:
        message["reasoning_content"] = "".join(turn.reasoning)
    if turn.blocks:
        message["thinking_blocks"] = turn.blocks
    if turn.refusal:
        message["refusal"] = "".join(turn.refusal)
    if turn.calls:
        message["tool_calls"] = [{"id": c.call_id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}, **c.extra}
                                 for c in turn.calls]
    return {**BASE, "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": turn.finish}], "usage": turn.usage}


def sse(events: list[dict[str, Any]], *, done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return out + b"data: [DONE]\n\n" if done else out


def events(stream: bytes) -> list[dict[str, Any]]:
    """A Responses SSE stream → its events, checking each `event:` line names the `data:` type."""
    out = []
    for block in stream.split(b"\n\n"):
        if not block:
            continue
        head, data = block.split(b"\n", 1)
        assert head.startswith(b"event: ") and data.startswith(b"data: "), block
        event = json.loads(data[6:])
        assert event["type"] == head[7:].decode()
        out.append(event)
    return out
