"""Usage read from a Responses answer the gateway relays untouched (same-dialect passthrough).

The reader looks at the provider's SSE bytes as they pass: it keeps only the unfinished tail event
between feeds, and parses JSON only for events whose bytes name a terminal event type or an error
(a substring test first), so the ordinary delta events cost a `find` each. Terminal events
(`response.completed`, `response.incomplete`, `response.failed`) carry the whole response object:
its `usage`, and the object itself for storing the conversation. Events are separated by a blank
line (`\\n\\n`), as OpenAI and Azure send them."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.context import Usage
from gateway.providers.base import token_count

_TERMINAL = (b"response.completed", b"response.incomplete", b"response.failed")
_TERMINAL_TYPES = frozenset(kind.decode() for kind in _TERMINAL)
_MARKERS = (*_TERMINAL, b"event: error", b'"type":"error"')


def usage_of(usage: object) -> Usage | None:
    """Responses usage → the gateway's (input tokens include cache reads and writes)."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details")
    if not isinstance(details, dict):
        details = {}
    return Usage(prompt_tokens=token_count(usage, "input_tokens"),
                 completion_tokens=token_count(usage, "output_tokens"),
                 cached_tokens=token_count(details, "cached_tokens"),
                 cache_write_tokens=token_count(details, "cache_write_tokens"))


def usage_from_body(body: bytes) -> Usage | None:
    try:
        response = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return usage_of(response.get("usage")) if isinstance(response, dict) else None


class UsageReader:
    __slots__ = ("_tail", "done", "error", "response", "usage")
    _tail: list[bytes]

    def __init__(self) -> None:
        # The pieces of the unfinished last event (kept apart: joined once, when it ends).
        self._tail = []
        self.usage: Usage | None = None
        self.done = False
        self.error: dict[str, Any] | None = None
        # The terminal event's response object (for storing a passthrough conversation).
        self.response: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        tail = self._tail
        straddles = bool(tail) and tail[-1].endswith(b"\n") and data.startswith(b"\n")
        if not straddles and b"\n\n" not in data:
            tail.append(data)
            return
        # The unfinished event of the earlier pieces goes first (its blank line may straddle them).
        buffer = b"".join((*tail, data)) if tail else data
        cut = buffer.rfind(b"\n\n")
        self._scan(buffer[:cut])
        rest = buffer[cut + 2:]
        self._tail = [rest] if rest else []

    def _scan(self, events: bytes) -> None:
        """Parse each event that names a marker, found with `find`: the many other events in the same
        bytes (the deltas) are neither split apart nor looked at one by one."""
        for marker in _MARKERS:
            at = events.find(marker)
            while at >= 0:
                start = events.rfind(b"\n\n", 0, at)
                start = 0 if start < 0 else start + 2
                end = events.find(b"\n\n", at)
                end = len(events) if end < 0 else end
                self._event(events[start:end])
                at = events.find(marker, end)

    def _event(self, event: bytes) -> None:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            try:
                payload = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if not isinstance(payload, dict):
                continue
            kind = payload.get("type")
            if kind == "error":
                self.error = payload
            elif kind in _TERMINAL_TYPES:
                response = payload.get("response")
                if isinstance(response, dict):
                    self.response = response
                    self.usage = usage_of(response.get("usage"))
                    if kind == "response.failed" and isinstance(response.get("error"), dict):
                        self.error = response["error"]
                self.done = True
