"""A fake Anthropic Messages API for agent CLIs: answers a turn with a tool call, and the turn that
carries the tool's result back with text, streamed in Anthropic's event grammar."""

from __future__ import annotations

import json
from typing import Any

from tests.support.servers import Recorded, Reply


def message_events(model: str, blocks: list[dict[str, Any]], stop_reason: str, *, number: int = 1) -> bytes:
    """A whole Messages stream (`event:` + `data:` pairs) with the given content blocks."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": f"msg_fake{number:04d}", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": 1}}}),
        ("ping", {"type": "ping"})]
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            delta: dict[str, Any] = {"type": "text_delta", "text": block["text"]}
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}),
                   ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}),
                   ("content_block_stop", {"type": "content_block_stop", "index": i})]
    events += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                  "usage": {"output_tokens": 7}}),
               ("message_stop", {"type": "message_stop"})]
    return b"".join(b"event: " + name.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"
                    for name, data in events)


def has_tool_result(body: dict[str, Any]) -> bool:
    last = body.get("messages", [{}])[-1]
    content = last.get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


class ToolRoundTrip:
    """First turn: call `tool` with `arguments`; the turn with a tool result: answer `final_text`.
    Calls that offer no tools (titles, summaries from the small model) get a plain text answer."""

    def __init__(self, tool: str, arguments: dict[str, Any], final_text: str) -> None:
        self.tool, self.arguments, self.final_text = tool, arguments, final_text
        self.turns = 0
        # The bytes of each Messages answer, in order.
        self.sent: list[bytes] = []

    def __call__(self, request: Recorded) -> Reply:
        if request.method != "POST" or not request.path.endswith("/messages"):
            return Reply(json={"data": [], "has_more": False, "first_id": None, "last_id": None})
        body = request.json
        self.turns += 1
        tools = {t.get("name") for t in body.get("tools") or ()}
        if has_tool_result(body) or self.tool not in tools:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": self.final_text}]
            stop = "end_turn"
        else:
            blocks = [{"type": "tool_use", "id": f"toolu_fake{self.turns:04d}", "name": self.tool,
                       "input": self.arguments}]
            stop = "tool_use"
        if body.get("stream"):
            stream = message_events(body.get("model", "claude"), blocks, stop, number=self.turns)
            self.sent.append(stream)
            return Reply(chunks=[stream], content_type="text/event-stream")
        answer = json.dumps(_message_of(body.get("model", "claude"), blocks, stop, self.turns)).encode()
        self.sent.append(answer)
        return Reply(body=answer, content_type="application/json")


def _message_of(model: str, blocks: list[dict[str, Any]], stop: str, number: int) -> dict[str, Any]:
    return {"id": f"msg_fake{number:04d}", "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 7}}
