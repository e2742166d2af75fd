"""Helpers for the Messages dialect's tests: recorded traffic, the Anthropic event grammar, and the
official `anthropic` SDK reading bytes the codec produced, served from a loopback fake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
from pydantic import TypeAdapter

from tests.support.servers import FakeUpstream, Reply

DATA = Path(__file__).resolve().parents[1] / "data"
RECORDED = DATA / "recorded-traffic"
CLAUDE_CODE = DATA / "clients" / "claude-code"
EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)


def recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return data


def recorded_body(name: str) -> bytes:
    """The response body of a recording, as the provider sent it."""
    body = recording(name)["response"]["body"]
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


def claude_code(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CLAUDE_CODE / f"{name}.json").read_text())
    return data


def sse(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    """Canonical chunks as OpenAI SSE bytes."""
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n" if done else b"")


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of Messages SSE bytes; each event is also checked to be `event:` + `data:`."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def check_grammar(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The events of a Messages stream, asserted to follow Anthropic's grammar and to validate against
    the SDK's own event types. Returns them."""
    parsed = events(raw)
    names = [name for name, _ in parsed]
    for name, data in parsed:
        assert data["type"] == name
        if name not in ("error", "ping"):
            EVENT.validate_python(data)
    assert names[0] == "message_start", names
    assert names[1] == "ping", names
    open_block: dict[str, Any] | None = None
    next_index = 0
    ended = False
    for name, data in parsed[2:]:
        assert not ended, f"{name} after the end"
        if name == "content_block_start":
            assert open_block is None and data["index"] == next_index
            open_block = data["content_block"]
        elif name == "content_block_delta":
            assert open_block is not None and data["index"] == next_index
            allowed = {"text": {"text_delta"}, "tool_use": {"input_json_delta"},
                       "thinking": {"thinking_delta", "signature_delta"}}[open_block["type"]]
            assert data["delta"]["type"] in allowed, (open_block, data)
        elif name == "content_block_stop":
            assert open_block is not None and data["index"] == next_index
            open_block, next_index = None, next_index + 1
        elif name == "message_delta":
            assert open_block is None
        elif name == "message_stop":
            assert names[-2] == "message_delta"
            ended = True
        elif name == "error":
            assert open_block is None
            ended = True
        else:
            raise AssertionError(f"unexpected event {name}")
    assert ended, "the stream did not end"
    return parsed


def sdk_stream(raw: bytes) -> anthropic.types.Message:
    """The message the official SDK's `messages.stream()` accumulates from `raw`."""
    with (FakeUpstream(lambda _r: Reply(chunks=[raw], content_type="text/event-stream")) as upstream,
          anthropic.Anthropic(base_url=upstream.url, api_key="sk-test", max_retries=0) as client,
          client.messages.stream(model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream):
        for _ in stream:
            pass
        return stream.get_final_message()


def sdk_create(status: int, body: bytes, headers: dict[str, str] | None = None) -> anthropic.types.Message:
    """`messages.create()` of the official SDK against an answer of `status` and `body`."""
    reply = Reply(status=status, body=body, headers=headers or {})
    with (FakeUpstream(lambda _r: reply) as upstream,
          anthropic.Anthropic(base_url=upstream.url, api_key="sk-test", max_retries=0) as client):
        return client.messages.create(model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}])


def canonical_from_anthropic(raw: bytes) -> list[dict[str, Any]]:
    """A recorded Anthropic stream as the canonical chunks the agreed form describes (what a
    translating Anthropic provider emits): thinking_delta → reasoning_content, the signature →
    one thinking_blocks chunk, redacted → a whole block, text → content, tool_use → tool_calls."""
    chunks: list[dict[str, Any]] = []
    tools = -1
    kinds: dict[int, str] = {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
        chunks.append({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    usage: dict[str, int] = {}
    finish = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length", "refusal": "content_filter",
              "stop_sequence": "stop"}
    for name, data in events_lenient(raw):
        if name == "message_start":
            usage.update({k: v for k, v in data["message"]["usage"].items() if isinstance(v, int)})
            chunk({"role": "assistant"})
        elif name == "content_block_start":
            block = data["content_block"]
            kinds[data["index"]] = block["type"]
            if block["type"] == "redacted_thinking":
                chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": block["data"]}]})
            elif block["type"] == "tool_use":
                tools += 1
                chunk({"tool_calls": [{"index": tools, "id": block["id"], "type": "function",
                                       "function": {"name": block["name"], "arguments": ""}}]})
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                chunk({"content": delta["text"]})
            elif delta["type"] == "thinking_delta" and delta["thinking"]:
                chunk({"reasoning_content": delta["thinking"]})
            elif delta["type"] == "signature_delta":
                chunk({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": delta["signature"]}]})
            elif delta["type"] == "input_json_delta" and delta["partial_json"]:
                chunk({"tool_calls": [{"index": tools, "function": {"arguments": delta["partial_json"]}}]})
        elif name == "message_delta":
            usage.update({k: v for k, v in data["usage"].items() if isinstance(v, int)})
            chunk({}, finish[data["delta"]["stop_reason"]])
    read, written = usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0)
    chunks.append({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                   "usage": {"prompt_tokens": usage["input_tokens"] + read + written,
                             "completion_tokens": usage["output_tokens"],
                             "total_tokens": usage["input_tokens"] + read + written + usage["output_tokens"],
                             "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written}}})
    return chunks


def events_lenient(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) of a provider's recorded SSE (extra spaces and all)."""
    out = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        name = data = None
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
        if name and data is not None:
            out.append((name, data))
    return out
