"""Usage of an Anthropic answer relayed untouched (a Messages client, an Anthropic deployment).

`UsageReader` watches the provider's SSE bytes on their way to the client. It looks for the event
lines of the four events that matter (`message_start` and `message_delta` carry usage,
`message_stop` ends the message, `error` fails it) with `bytes.find` on their names, and parses the
JSON of those events' data lines alone: the bytes of every other event (the content deltas, nearly
all of a stream) are skipped at C speed without being split, copied or decoded, and a read is only
joined to the next when it ends inside one of those few event lines. Anthropic writes event lines as
`event: <name>` with one space, which the search relies on. Anthropic's counts are cumulative, so the
last figure of each kind wins (with server-side compaction, the sum over the `iterations`).

Usage maps to the gateway's: prompt tokens = input + cache reads + cache writes (OpenAI's
semantics), cached = cache reads, cache writes = cache creation, completion = output.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.context import Usage
from gateway.providers.base import token_count

_MESSAGE = b"event: message_"
_ERROR = b"event: error"
_NAME_AT = len(b"event:")
_WANTED = frozenset({b"message_start", b"message_delta", b"message_stop", b"error"})
_FIGURES = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


class UsageReader:
    __slots__ = ("_figures", "_midline", "_tail", "_want", "done", "error", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.done = False
        self.error: dict[str, Any] | None = None
        self._figures: dict[str, int] = {}
        self._tail = b""  # the start of an event line of interest, cut by the read
        self._want: bytes | None = None  # the event whose data line comes next
        self._midline = False  # the previous read ended inside a line of no interest

    def feed(self, data: bytes) -> None:
        buf = self._tail + data if self._tail else data
        self._tail = b""
        i = 0
        if self._midline:
            i = buf.find(b"\n") + 1
            if i == 0:
                return
            self._midline = False
        size = len(buf)
        while i < size:
            if self._want is not None:
                end = buf.find(b"\n", i)
                if end < 0:
                    self._tail = buf[i:]
                    return
                if buf.startswith(b"data:", i):
                    self._read(self._want, buf[i + 5:end])
                    self._want = None
                elif buf[i:end].strip() == b"":
                    self._want = None  # the event ended without data
                i = end + 1
                continue
            at = _next_event(buf, i)
            if at < 0:
                self._keep(buf)
                return
            if at > 0 and buf[at - 1] != 0x0A:
                i = at + _NAME_AT  # inside a line (a data payload), not an event field
                continue
            end = buf.find(b"\n", at)
            if end < 0:
                self._tail = buf[at:]
                return
            name = buf[at + _NAME_AT:end].strip()
            if name in _WANTED:
                self._want = name
                if name == b"message_stop":
                    self.done = True
            i = end + 1

    def _keep(self, buf: bytes) -> None:
        """After the last event of interest: keep the read's unfinished last line only if it may be the
        start of one (`event: mess`), else skip the rest of that line in the next read."""
        line_start = buf.rfind(b"\n") + 1
        if line_start == len(buf):
            return
        if len(buf) - line_start < len(_MESSAGE):
            rest = buf[line_start:]
            if _MESSAGE.startswith(rest) or _ERROR.startswith(rest):
                self._tail = rest
                return
        self._midline = True

    def _read(self, name: bytes, payload: bytes) -> None:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict):
            return
        if name == b"error":
            error = body.get("error")
            self.error = error if isinstance(error, dict) else body
        elif name == b"message_start":
            message = body.get("message")
            self._add(message.get("usage") if isinstance(message, dict) else None)
        elif name == b"message_delta":
            self._add(body.get("usage"))

    def _add(self, usage: object) -> None:
        if isinstance(usage, dict):
            self._figures.update(_figures(usage))
            self.usage = _usage(self._figures)


def _next_event(buf: bytes, start: int) -> int:
    message = buf.find(_MESSAGE, start)
    error = buf.find(_ERROR, start)
    if error < 0:
        return message
    return error if message < 0 else min(message, error)


def usage_from_body(body: bytes) -> Usage | None:
    """The usage of a non-streamed Messages answer; None when the body has none."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = message.get("usage") if isinstance(message, dict) else None
    return _usage(_figures(usage)) if isinstance(usage, dict) else None


def _figures(usage: dict[str, Any]) -> dict[str, int]:
    """The counts a usage object gives. With server-side compaction the top-level counts are the last
    iteration's alone and `iterations` lists every billed one: their sums are the call's usage."""
    iterations = usage.get("iterations")
    if isinstance(iterations, list) and iterations:
        totals = dict.fromkeys(_FIGURES, 0)
        for step in iterations:
            for key, value in _figures(step).items() if isinstance(step, dict) else ():
                totals[key] += value
        return totals
    return {key: token_count(usage, key) for key in _FIGURES if usage.get(key) is not None}  # broken: refused


def _usage(figures: dict[str, int]) -> Usage:
    read = figures.get("cache_read_input_tokens", 0)
    written = figures.get("cache_creation_input_tokens", 0)
    return Usage(prompt_tokens=figures.get("input_tokens", 0) + read + written,
                 completion_tokens=figures.get("output_tokens", 0), cached_tokens=read, cache_write_tokens=written)
