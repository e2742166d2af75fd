"""A stream from a deployment that speaks the client's dialect: relayed byte for byte, with the
dialect's usage reader watching it for usage, its end and its errors."""

from __future__ import annotations

from collections.abc import Callable

from gateway.context import Usage
from gateway.dialects.base import UsageReader
from gateway.errors import UpstreamError


class PassthroughStream:
    """A StreamTranslator that translates nothing. An error event before anything was relayed fails
    the attempt (another deployment may still answer); after that the provider's own error event
    reaches the client as it was sent, through `redact` (the config's secrets taken out). SSE
    keep-alives (comment and blank lines) before the first real event are dropped: they do not commit
    the stream, which may still fall back."""

    finish_reason: str | None = None

    def __init__(self, reader: UsageReader, redact: Callable[[bytes], bytes] | None = None) -> None:
        self.reader = reader
        self.redact = redact
        self.usage: Usage | None = None
        self.done = False
        self._relayed = False
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        reader = self.reader
        reader.feed(data)
        self.usage = reader.usage
        self.done = reader.done and reader.error is None
        if reader.error is not None and not self._relayed:
            raise _stream_error(reader.error)
        if not self._relayed:
            data = self._after_keepalives(data)
            if not data:
                return b""
            self._relayed = True
        if reader.error is not None and self.redact is not None:
            return self.redact(data)
        return data

    def _after_keepalives(self, data: bytes) -> bytes:
        """`data` from its first line that is not a keep-alive on; a partial line that may still
        become a comment is held for the next read."""
        data = self._held + data if self._held else data
        self._held = b""
        start = 0
        while True:
            end = data.find(b"\n", start)
            line = data[start:] if end < 0 else data[start:end]
            if line[:1] not in (b"", b":", b"\r"):
                return data[start:]
            if end < 0:
                self._held = line
                return b""
            start = end + 1

    def finish(self) -> bytes:
        return b""


def _stream_error(error: dict[str, object]) -> UpstreamError:
    inner = error.get("error") if isinstance(error.get("error"), dict) else error
    assert isinstance(inner, dict)
    kind = str(inner.get("type") or inner.get("code") or "api_error")
    status = 529 if kind == "overloaded_error" else 429 if "rate_limit" in kind else 502
    return UpstreamError(str(inner.get("message") or "The provider failed the stream."), status=status,
                         error_type=kind)
