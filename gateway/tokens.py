"""Token counting for TPM reservations and for usage the provider did not report.

Exact counts need tiktoken's encoding files. The gateway ships `cl100k_base` (gateway/data/tiktoken,
under the file name tiktoken gives it in its cache) and never downloads anything: an encoding whose
file is not there is not loaded at all. A model of such an encoding (`o200k_base`: the gpt-4o,
gpt-4.1, gpt-5 and o-series families) is counted with `cl100k_base`, close for English and code,
and every such count is flagged as an estimate (the metric hook); without any encoding file the
gateway estimates from the UTF-8 length (bytes / 4, rounded up). Startup says in one line which
aliases estimate. `TIKTOKEN_CACHE_DIR` points at another directory of encoding files instead.
Encodings are loaded off the event loop at startup (`preload`), never on the hot path; counts of
repeated message contents are cached.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from gateway.logs import get_logger

log = get_logger("tokenize")

# Per-message framing of the chat format (the cookbook's numbers for gpt-3.5/4-family models).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# An image's token cost depends on its size, which the gateway does not fetch: a fixed upper-ish bound
# (a high-detail 1024x1024 image is 765 tokens on gpt-4o) keeps reservations from under-counting.
IMAGE_TOKENS = 765


# The encoding files shipped with the gateway, and each encoding's file name in tiktoken's cache (the
# SHA-1 of the URL tiktoken would download it from).
SHIPPED_ENCODINGS = Path(__file__).resolve().parent / "data" / "tiktoken"
CACHE_NAMES = {"cl100k_base": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
               "o200k_base": "fb374d419588a4632f3f557e76b4b70aebbca790"}
# What a model of an encoding without its file is counted with.
STAND_IN = "cl100k_base"


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
            # tiktoken reads its files from this directory; a file that is not there would be
            # downloaded, so it is not asked for at all.
            directory = os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHIPPED_ENCODINGS))
            file = CACHE_NAMES.get(name)
            if file is None or not (Path(directory) / file).is_file():
                self._unavailable.add(name)
                return False
            try:
                import tiktoken

                encoding = tiktoken.get_encoding(name)
            except Exception as exc:  # a damaged file: estimate instead
                self._unavailable.add(name)
                log.warning("tokenizer encoding unreadable; token counts will be estimated",
                            extra={"fields": {"encoding": name, "reason": type(exc).__name__}})
                return False

            @functools.lru_cache(maxsize=8192)
            def count(text: str) -> int:
                return len(encoding.encode(text, disallowed_special=()))

            self._encoders[name] = count
            return True

    def estimating(self, models: Iterable[str]) -> list[str]:
        """The models whose counts are estimates (their encoding is not loaded)."""
        return [model for model in models if not self.exact(model)]

    def how(self, model: str) -> str:
        """How a model's tokens are counted: its encoding, a stand-in, or the UTF-8 length."""
        name = encoding_name_for(model)
        if name in self._encoders:
            return name
        return STAND_IN if STAND_IN in self._encoders else "bytes/4"

    def exact(self, model: str) -> bool:
        return encoding_name_for(model) in self._encoders

    def _counter(self, model: str) -> tuple[Callable[[str], int], bool]:
        name = encoding_name_for(model)
        counter = self._encoders.get(name)
        if counter is not None:
            return counter, True
        self._on_estimate(name)
        return self._encoders.get(STAND_IN, estimate), False

    def count_text(self, text: str, model: str) -> tuple[int, bool]:
        """(tokens, exact)."""
        counter, exact = self._counter(model)
        return counter(text), exact

    def count_messages(self, messages: list[dict[str, Any]], model: str) -> tuple[int, bool]:
        """Prompt tokens of a chat request, message framing included."""
        counter, exact = self._counter(model)
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
        return total, exact

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
