"""A same-dialect stream relayed as it came, except: keep-alives before its first real event are
dropped (they do not commit the stream), and a provider's error event relayed after the commit goes
through the redactor. Split anywhere, the relayed bytes are the same."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.context import Usage
from gateway.dialects import PassthroughStream

EVENT = b'event: message_start\ndata: {"type": "message_start"}\n\n'
ERROR = b'event: error\ndata: {"type": "error", "error": {"message": "key sk-secret-123 refused"}}\n\n'


class Reader:
    """Enough of a UsageReader: it notices an error event once one has arrived whole."""

    def __init__(self) -> None:
        self.seen = b""
        self.usage: Usage | None = None
        self.done = False
        self.error: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        self.seen += data
        if b'"type": "error"' in self.seen and self.seen.endswith(b"\n\n"):
            self.error = {"type": "error", "error": {"message": "x"}}


def relay(data: bytes, cuts: list[int]) -> bytes:
    stream = PassthroughStream(Reader(), lambda b: b.replace(b"sk-secret-123", b"[REDACTED]"))
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return b"".join(stream.feed(piece) for piece in pieces)


@given(st.lists(st.integers(0, 10_000), max_size=6))
def test_keepalives_before_the_first_event_are_dropped_however_split(cuts: list[int]) -> None:
    assert relay(b": PROCESSING\n\n: ping\r\n\r\n\n" + EVENT + b": ping\n\n", cuts) == EVENT + b": ping\n\n"


def test_keepalives_alone_give_the_client_nothing() -> None:
    stream = PassthroughStream(Reader())
    assert stream.feed(b": PROCESSING\n\n") == b""
    assert stream.feed(b": pi") == b""
    assert stream.feed(b"ng\n\n" + EVENT) == EVENT


def test_an_error_event_after_the_commit_is_redacted() -> None:
    stream = PassthroughStream(Reader(), lambda b: b.replace(b"sk-secret-123", b"[REDACTED]"))
    assert stream.feed(EVENT) == EVENT
    out = stream.feed(ERROR)
    assert b"sk-secret-123" not in out and b"[REDACTED]" in out
