"""Server-sent events framing shared by the providers that stream SSE."""

from __future__ import annotations


class SSESplitter:
    """Splits a byte stream into complete SSE events (the text between blank lines), however the
    network chunked it. Events are returned as raw bytes without the trailing blank line."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        events = buffer.split(b"\n\n")
        self._buffer = events.pop()
        return [event for event in events if event]

    @property
    def between_events(self) -> bool:
        """Whether the next read begins at an event's start (nothing of an unfinished one is held)."""
        return not self._buffer

    def rest(self) -> bytes:
        """What is left after the stream ended (an unterminated last event, if any)."""
        rest, self._buffer = self._buffer.strip(), b""
        return rest


def event_data(event: bytes) -> bytes | None:
    """The `data:` payload of one event (multi-line data joined with newlines); None if it has none."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:].lstrip(b" ")  # the common case: one data line
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def event_name(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip()
    return None


DONE = b"data: [DONE]\n\n"


def sse(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"
