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

    def __init__(self) -> None:
        self._tail = b""
        self.usage: Usage | None = None
        self.done = False
        self.error: dict[str, Any] | None = None
        # The terminal event's response object (for storing a passthrough conversation).
        self.response: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._tail += data
            return
        if self._tail:
            # The event that began in an earlier piece ends in this one.
            first = data.find(b"\n\n")
            self._scan(self._tail + data[:first])
            self._scan(data[first + 2:cut])
        else:
            self._scan(data[:cut])
        self._tail = data[cut + 2:]

    def _scan(self, events: bytes) -> None:
        if not any(marker in events for marker in _MARKERS):
            return
        for event in events.split(b"\n\n"):
            if any(marker in event for marker in _MARKERS):
                self._event(event)

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
