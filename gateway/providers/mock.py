"""The built-in mock provider: deterministic OpenAI-format answers, no network, no API key.

It is a real adapter (the OpenAI translator) whose upstream is an in-process responder in
`gateway.upstream`; this module holds the pure part: what the mock answers to a request.
Answers: the last user message echoed back, or, when the upstream model name is `lorem`, lorem text
as long as `max_tokens` asks (default 16 words, at most MAX_LOREM_TOKENS). One word is counted as one
token. `n` answers give `n` identical choices (completion tokens counted for each); embeddings honour
`encoding_format: "base64"` (little-endian float32, as OpenAI encodes them).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from typing import Any

from gateway.providers.openai import OpenAIAdapter
from gateway.schemas import Operation

_LOREM = tuple(
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut "
    "aliquip ex ea commodo consequat".split(" ")
)


# The longest lorem answer: the mock builds its answers in Python on the event loop, and an unbounded
# `max_tokens` (20,000,000) stalled every other request for seconds. Longer asks end at "length".
MAX_LOREM_TOKENS = 8192
# OpenAI's own bound on `n`; past it the mock answers this many choices (each one is built in Python).
MAX_CHOICES = 128


class MockAdapter(OpenAIAdapter):
    def __init__(self, name: str) -> None:
        super().__init__(f"mock://{name}")


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _prompt_words(operation: Operation, body: dict[str, Any]) -> tuple[int, str]:
    """(prompt token count, the text to echo)."""
    if operation is Operation.CHAT:
        messages = body.get("messages") or []
        words = sum(len(_text_of(m.get("content")).split()) + 3 for m in messages)
        last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        return words, last_user
    prompt = body.get("prompt", "")
    text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    return len(text.split()), text


def answer_words(operation: Operation, body: dict[str, Any]) -> tuple[list[str], int, str]:
    """The words of the answer, the prompt token count and the finish reason."""
    prompt_tokens, echo = _prompt_words(operation, body)
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    if body.get("model") == "lorem":
        asked = int(limit or 16)
        count = min(asked, MAX_LOREM_TOKENS)
        words = [_LOREM[i % len(_LOREM)] for i in range(count)]
        return words, prompt_tokens, "length" if asked > count else "stop"
    words = echo.split() or ["ok"]
    if limit and len(words) > limit:
        return words[:limit], prompt_tokens, "length"
    return words, prompt_tokens, "stop"


def response_id(body: dict[str, Any]) -> str:
    return "chatcmpl-mock" + hashlib.blake2b(repr(body.get("messages", body.get("prompt"))).encode(),
                                              digest_size=8).hexdigest()


def completion(operation: Operation, body: dict[str, Any]) -> dict[str, Any]:
    """A complete, non-streamed answer."""
    if operation is Operation.EMBEDDINGS:
        return embeddings(body)
    words, prompt_tokens, finish = answer_words(operation, body)
    text = " ".join(words)
    n = _choices(body)
    usage = _usage(prompt_tokens, len(words) * n)
    if operation is Operation.CHAT:
        return {
            "id": response_id(body), "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "mock",
            "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": finish} for i in range(n)],
            "usage": usage,
        }
    return {
        "id": response_id(body).replace("chatcmpl", "cmpl"), "object": "text_completion",
        "created": int(time.time()), "model": body["model"],
        "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish} for i in range(n)],
        "usage": usage,
    }


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    return min(n, MAX_CHOICES) if isinstance(n, int) and n > 1 else 1


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def stream_chunks(operation: Operation, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks of a streamed answer, one word each, with a usage chunk at the end when the
    request asked for it (as OpenAI does with `stream_options.include_usage`)."""
    words, prompt_tokens, finish = answer_words(operation, body)
    rid, created, model = response_id(body), int(time.time()), body["model"]
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    chat = operation is Operation.CHAT
    obj = "chat.completion.chunk" if chat else "text_completion"
    usage_field: dict[str, Any] = {"usage": None} if with_usage else {}

    def chunk(choice: dict[str, Any]) -> dict[str, Any]:
        return {"id": rid, "object": obj, "created": created, "model": model,
                "system_fingerprint": "mock", "choices": [choice], **usage_field}

    n = _choices(body)
    chunks: list[dict[str, Any]] = []
    for index in range(n):  # one choice after another: clients gather deltas by index either way
        if chat:
            chunks.append(chunk({"index": index, "delta": {"role": "assistant", "content": ""},
                                 "logprobs": None, "finish_reason": None}))
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            delta: dict[str, Any] = {"delta": {"content": piece}} if chat else {"text": piece}
            chunks.append(chunk({"index": index, **delta, "logprobs": None, "finish_reason": None}))
        end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        chunks.append(chunk({"index": index, **end, "logprobs": None, "finish_reason": finish}))
    if with_usage:
        chunks.append({"id": rid, "object": obj, "created": created, "model": model,
                       "system_fingerprint": "mock", "choices": [],
                       "usage": _usage(prompt_tokens, len(words) * n)})
    return chunks


# A bound on `dimensions`: the mock builds its vectors in Python, and a huge count would stall the loop.
MAX_DIMENSIONS = 4096


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """Deterministic unit-length vectors derived from each input's hash."""
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)) \
        else list(raw or [])
    dims = min(int(body.get("dimensions") or 8), MAX_DIMENSIONS)
    data, tokens = [], 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += max(1, len(text.split()))
        digest = hashlib.sha256(text.encode()).digest()
        vector = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dims)]
        norm = sum(v * v for v in vector) ** 0.5 or 1.0
        unit = [v / norm for v in vector]
        embedding: list[float] | str = unit
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dims}f", *unit)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {"object": "list", "data": data, "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
