"""Token counting for TPM reservations and for usage the provider did not report.

Exact counts need tiktoken's encoding files, which are downloaded on first use. Where that is not
possible (no network, no TIKTOKEN_CACHE_DIR), the gateway estimates (UTF-8 bytes / 4, rounded up),
says so once in a log line, and counts every estimate in a metric. Encodings are loaded off the event
loop at startup (`preload`), never on the hot path; counts of repeated message contents are cached.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from gateway.logging import get_logger

log = get_logger("tokenize")

# Per-message framing of the chat format (the cookbook's numbers for gpt-3.5/4-family models).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# An image's token cost depends on its size, which the gateway does not fetch: a fixed upper-ish bound
# (a high-detail 1024x1024 image is 765 tokens on gpt-4o) keeps reservations from under-counting.
IMAGE_TOKENS = 765


def encoding_name_for(model: str) -> str:
    m = model.lower()
    if m.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    return "cl100k_base"


class TokenCounter:
    """Counts tokens with tiktoken where its encoding is loaded, estimates otherwise.

    `on_estimate(encoding)` is called for every estimated count (the metric hook)."""

    def __init__(self, on_estimate: Callable[[str], None] | None = None) -> None:
        self._encoders: dict[str, Callable[[str], int]] = {}
        self._unavailable: set[str] = set()
        self._lock = threading.Lock()
        self._on_estimate = on_estimate or (lambda _name: None)

    def preload(self, names: Iterable[str] = ("cl100k_base", "o200k_base")) -> dict[str, bool]:
        """Load encodings (blocking: call from a thread). Returns which ones are exact."""
        return {name: self._load(name) for name in names}

    def _load(self, name: str) -> bool:
        with self._lock:
            if name in self._encoders:
                return True
            if name in self._unavailable:
                return False
            try:
                import tiktoken

                encoding = tiktoken.get_encoding(name)
            except Exception as exc:  # no network, no cache dir, unknown name: estimate instead
                self._unavailable.add(name)
                log.warning("tokenizer encoding unavailable; token counts will be estimated",
                            extra={"fields": {"encoding": name, "reason": type(exc).__name__}})
                return False

            @functools.lru_cache(maxsize=8192)
            def count(text: str) -> int:
                return len(encoding.encode(text, disallowed_special=()))

            self._encoders[name] = count
            return True

    def exact(self, model: str) -> bool:
        return encoding_name_for(model) in self._encoders

    def count_text(self, text: str, model: str) -> tuple[int, bool]:
        """(tokens, exact)."""
        name = encoding_name_for(model)
        counter = self._encoders.get(name)
        if counter is not None:
            return counter(text), True
        self._on_estimate(name)
        return estimate(text), False

    def count_messages(self, messages: list[dict[str, Any]], model: str) -> tuple[int, bool]:
        """Prompt tokens of a chat request, message framing included."""
        name = encoding_name_for(model)
        counter = self._encoders.get(name)
        if counter is None:
            self._on_estimate(name)
            counter = estimate
        total = REPLY_PRIMING
        for message in messages:
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                if key == "content":
                    total += _content_tokens(value, counter)
                elif key == "name" and isinstance(value, str):
                    total += TOKENS_PER_NAME + counter(value)
                elif key == "role" and isinstance(value, str):
                    total += counter(value)
                elif key == "tool_calls" and isinstance(value, list):
                    for call in value:
                        function = call.get("function") if isinstance(call, dict) else None
                        if isinstance(function, dict):
                            total += counter(str(function.get("name", "")))
                            total += counter(str(function.get("arguments", "")))
                elif key == "tool_call_id" and isinstance(value, str):
                    total += counter(value)
        return total, counter is not estimate

    def count_prompt(self, operation: str, body: dict[str, Any], model: str) -> tuple[int, bool]:
        """Prompt tokens of any OpenAI request body (chat, completions, embeddings)."""
        if operation == "chat":
            tokens, exact = self.count_messages(body.get("messages") or [], model)
            tools = body.get("tools")
            if tools:
                extra, _ = self.count_text(orjson.dumps(tools).decode(), model)
                tokens += extra
            return tokens, exact
        source = body.get("prompt") if operation == "completions" else body.get("input")
        if isinstance(source, str):
            return self.count_text(source, model)
        if isinstance(source, list):
            total, exact = 0, True
            for item in source:
                if isinstance(item, str):
                    n, e = self.count_text(item, model)
                    total, exact = total + n, exact and e
                elif isinstance(item, int):
                    total += 1
                elif isinstance(item, list):
                    total += len(item)
            return total, exact
        return 0, True


def _content_tokens(content: object, counter: Callable[[str], int]) -> int:
    if isinstance(content, str):
        return counter(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                total += counter(str(part.get("text", "")))
            elif part.get("type") in ("image_url", "input_image", "image"):
                total += IMAGE_TOKENS
            else:
                total += counter(str(part.get("text", "")))
        return total
    return 0


def estimate(text: str) -> int:
    """About four bytes of UTF-8 per token for English and code; rounds up so reservations err high."""
    return (len(text.encode("utf-8")) + 3) // 4 if text else 0
