"""Usage the provider did not report (a cut or cancelled stream, an upstream without usage): counted
from the request and the text the client received, with the gateway's token counter, and flagged
`estimated`. Only runs when usage is missing, so the usual path never parses the stream."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.context import Usage
from gateway.tokens import TokenCounter


def text_of_sse(chunks: Iterable[bytes]) -> str:
    """The completion text (content, reasoning, tool-call names and arguments) of the SSE bytes a
    client was sent: Chat Completions chunks, or the events of the Messages or Responses API (what
    a stream captures is in its client's API)."""
    parts: list[str] = []
    for line in b"".join(chunks).split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if not payload.startswith(b"{"):
            continue
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue  # a partial event at a cut
        if not isinstance(chunk, dict):
            continue
        if "choices" in chunk:
            _collect(chunk.get("choices"), parts, streamed=True)
        else:
            _collect_event(chunk, parts)
    return "".join(parts)


# The Responses API's events whose `delta` is generated text.
_TEXT_EVENTS = frozenset({
    "response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta",
    "response.custom_tool_call_input.delta", "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
})
# A Messages content block delta's type → the field holding its text.
_BLOCK_DELTAS = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}


def _collect_event(event: dict[str, Any], parts: list[str]) -> None:
    kind = event.get("type")
    if kind == "content_block_delta":  # Messages
        delta = event.get("delta")
        if isinstance(delta, dict):
            text = delta.get(_BLOCK_DELTAS.get(str(delta.get("type")), ""))
            if isinstance(text, str):
                parts.append(text)
    elif kind == "content_block_start":  # a tool call's name
        block = event.get("content_block")
        if isinstance(block, dict) and isinstance(block.get("name"), str):
            parts.append(block["name"])
    elif kind == "response.output_item.added":
        item = event.get("item")
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            parts.append(item["name"])
    elif isinstance(kind, str) and kind in _TEXT_EVENTS:  # (a hostile upstream may send a list)
        text = event.get("delta")
        if isinstance(text, str):
            parts.append(text)


# Captured pieces a stream keeps as they came before they are compressed together.
PACK_AFTER = 64
# Raw deflate with a 4 KB window and little state: SSE events repeat their JSON around a few words
# of text, so even this packs them many times over, at a fraction of a default deflate's set-up cost.
_PACK_WBITS, _PACK_MEMLEVEL = -12, 2


def pack_capture(capture: list[bytes], packed: list[bytes]) -> None:
    """Move the pieces of a stream's capture into one compressed block appended to `packed`: a long
    stream whose events only accounting may need (to count a stream that ends without usage) then
    holds a small fraction of them in memory."""
    packer = zlib.compressobj(1, zlib.DEFLATED, _PACK_WBITS, _PACK_MEMLEVEL)
    packed.append(packer.compress(b"".join(capture)) + packer.flush())
    capture.clear()


def unpacked(packed: list[bytes], capture: list[bytes]) -> list[bytes]:
    """Every captured piece in order: the packed blocks, then the pieces captured since."""
    return [*(zlib.decompress(block, _PACK_WBITS) for block in packed), *capture]


def text_of_body(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    parts: list[str] = []
    if isinstance(data, dict):
        _collect(data.get("choices"), parts, streamed=False)
    return "".join(parts)


def _collect(choices: Any, parts: list[str], *, streamed: bool) -> None:
    if not isinstance(choices, list):
        return
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        text = choice.get("text")
        if isinstance(text, str):
            parts.append(text)
        message = choice.get("delta" if streamed else "message")
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts.append(str(function.get("name") or ""))
                parts.append(str(function.get("arguments") or ""))


def estimate_usage(tokens: TokenCounter, operation: str, body: dict[str, Any], model: str, completion_text: str,
                   reported: Usage | None) -> Usage:
    """Counted usage, keeping what the provider did report (a prompt count from a stream's start, cache
    counts) and never less completion than it reported."""
    if reported is not None and reported.prompt_tokens:
        prompt = reported.prompt_tokens
    else:
        prompt, _ = tokens.count_prompt(operation, body, model)
    completion = tokens.count_text(completion_text, model)[0] if completion_text else 0
    if reported is not None:
        completion = max(completion, reported.completion_tokens)
    return Usage(prompt_tokens=prompt, completion_tokens=completion,
                 cached_tokens=reported.cached_tokens if reported else 0,
                 cache_write_tokens=reported.cache_write_tokens if reported else 0, estimated=True)
