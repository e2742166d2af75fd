"""Recognising the canonical chunks that only add answer text, many at a time and without parsing them.

A translating dialect's stream encoder reads every canonical chunk, and most chunks of a stream are
one content delta each, byte for byte the chunk before (same `id`, `created`, `model`, …) but for
their text. Parsing each with orjson, walking the dict and building the dialect's event from it cost
most of such an encoder's work. So once an encoder has parsed a chunk that carries content text and
nothing else it acts on, `TextDeltas` keeps the bytes of its SSE event before and after that text's
JSON string (its head and tail). `run` then takes the events in a row that are that head, something,
that tail (two comparisons each), parses what is between in one go for the whole run (a piece that is
not one JSON string fails it), and `TextRun.write` puts each string between the dialect's own bytes
in one formatting. A live stream mostly reads one event at a time: `one` takes a read that is
exactly one such event, with a few comparisons and the parse of its string, and the encoder writes
its event from the same template. Anything else (another field, a finish reason, usage, reasoning, a
tool call, a chunk whose other bytes changed) is parsed as before.

What it saves: most of an encoder's cost per text delta (figures in docs/performance.md). What it
gives up: chunks that differ in more than their text every time (a per-chunk random field) are never
recognised; and the strings reach the client as the provider wrote them (valid JSON strings of the
same text, checked by the parse), not re-encoded by orjson.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_CONTENT_KEY = b'"content"'
# `"content": "…"`: the key and its string (a JSON string cannot hold a raw newline).
_CONTENT_STRING = re.compile(rb'"content"[ \t\r]*:[ \t\r]*("(?:[^"\\\n]|\\.)*")')


class TextRun:
    """Consecutive text deltas: their texts, and their JSON strings as they came."""

    __slots__ = ("count", "strings", "texts")

    def __init__(self, texts: list[str], strings: list[bytes]) -> None:
        self.count, self.texts, self.strings = len(texts), texts, strings

    def write(self, before: bytes, after: bytes, number_from: int | None = None) -> bytes:
        """Every text's event: its JSON string between `before` and `after`. With `number_from`, the one
        `%d` in `after` is each event's number, counting up from it: the events are one template,
        filled in one formatting (a raw NUL, which no JSON string holds, marks where they meet)."""
        if number_from is None:
            return before + (after + before).join(self.strings) + after
        before = before.replace(b"%", b"%%")
        strings = b"\x00".join(self.strings).replace(b"%", b"%%").replace(b"\x00", after + before)
        return (before + strings + after) % tuple(range(number_from, number_from + self.count))


_NO_RUN = TextRun([], [])


class TextDeltas:
    """`learn(event, chunk)`: after an encoder parsed an SSE event's data into `chunk` and acted on it.
    `run(events, start)`: the events from `events[start]` on that are the learned chunk with another
    text, up to the first that is not (count 0 when `events[start]` is not)."""

    __slots__ = ("_closing", "_head", "_tail")

    def __init__(self) -> None:
        self._head = self._tail = self._closing = b""  # (no head: nothing learned yet)

    def one(self, data: bytes) -> tuple[bytes, str] | None:
        """When `data`, a read of the stream that begins at an event's start, is exactly one learned
        event with another text: its JSON string and its text. This is the usual read of a live
        stream (a token at a time), answered without the lists and formatting of a run."""
        head, closing = self._head, self._closing
        if not head or not data.startswith(head) or not data.endswith(closing):
            return None
        string = data[len(head):-len(closing)]
        # Head and tail hold no newline: without one in between, this is one event.
        texts = _texts(string, 1) if string.find(b"\n") < 0 else None
        return (string, texts[0]) if texts is not None else None

    def run(self, events: list[bytes], start: int) -> TextRun:
        head, tail = self._head, self._tail
        cut, end = len(head), -len(tail)
        if not head or events[start][:cut] != head:  # (an event of another shape, at little cost)
            return _NO_RUN
        strings = []
        for event in events[start:]:
            # (An event too short to hold a string between the two gives an empty one: refused below.)
            if event[:cut] != head or event[end:] != tail:
                break
            strings.append(event[cut:end])
        if not strings:
            return _NO_RUN
        texts = _texts(b",".join(strings), len(strings))
        if texts is None:
            return self._one_by_one(strings)
        return TextRun(texts, strings)

    @staticmethod
    def _one_by_one(strings: list[bytes]) -> TextRun:
        """The leading ones of `strings` that are one non-empty JSON string each (a run the parse of
        all at once refused, or one with an event too short to hold a string between head and tail)."""
        texts: list[str] = []
        for string in strings:
            text = _texts(string, 1)
            if text is None:
                break
            texts += text
        return TextRun(texts, strings[:len(texts)])

    def learn(self, event: bytes, chunk: object) -> None:
        # Only an event of one `data:` line (the usual kind) is learned, and only a chunk that adds text.
        # The string found must be the delta's `content`: with no backslash outside that string (see
        # below), every key is spelled as it reads (the delta's `content` key too) and no other string
        # holds a quote, so the one `"content"` of the event is that key, and the string after it its
        # text. (The count comes first: it turns most other chunks away at the least cost.)
        if event.count(_CONTENT_KEY) != 1 or not event.startswith(b"data:") or event.find(b"\n") >= 0 \
                or not _adds_text_only(chunk):
            return
        found = _CONTENT_STRING.search(event)
        if found is None:
            return
        start, end = found.span(1)
        head, tail = event[:start], event[end:]
        if not tail or head.find(b"\\") >= 0 or tail.find(b"\\") >= 0:
            return
        self._head, self._tail, self._closing = head, tail, tail + b"\n\n"


def _texts(regions: bytes, count: int) -> list[str] | None:
    """The texts of `count` comma-separated regions that are one non-empty JSON string each, else None.
    (Regions joined by commas read as that many non-empty strings only when each is one string: an
    empty region, or one holding more or less, breaks the count or the syntax.)"""
    try:
        texts = orjson.loads(b"[" + regions + b"]")
        "".join(texts)  # a TypeError unless every one is a string
    except (orjson.JSONDecodeError, TypeError):
        return None
    if len(texts) != count or "" in texts:
        return None
    return texts  # type: ignore[no-any-return]


def _adds_text_only(chunk: object) -> bool:
    """Whether the chunk's only effect on an encoder is its text: one choice (index 0) whose delta has
    non-empty `content` and no other field with a value (but `role`), no finish reason, no usage, no
    error."""
    if type(chunk) is not dict or "error" in chunk or type(chunk.get("usage")) is dict:
        return False
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return False
    choice = choices[0]
    if type(choice) is not dict or choice.get("index", 0) != 0 or choice.get("finish_reason"):
        return False
    delta: Any = choice.get("delta")
    if type(delta) is not dict:
        return False
    text = delta.get("content")
    if type(text) is not str or not text:
        return False
    return not any(value for key, value in delta.items() if key != "content" and key != "role")
