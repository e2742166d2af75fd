"""A stream from a deployment that speaks the client's dialect: relayed byte for byte, with the
dialect's usage reader watching it for usage, its end and its errors."""

from __future__ import annotations

from gateway.context import Usage
from gateway.dialects.base import UsageReader
from gateway.errors import UpstreamError


class PassthroughStream:
    """A StreamTranslator that translates nothing. An error event before anything was relayed fails
    the attempt (another deployment may still answer); after that the provider's own error event
    reaches the client as it was sent."""

    finish_reason: str | None = None

    def __init__(self, reader: UsageReader) -> None:
        self.reader = reader
        self.usage: Usage | None = None
        self.done = False
        self._relayed = False

    def feed(self, data: bytes) -> bytes:
        reader = self.reader
        reader.feed(data)
        self.usage = reader.usage
        self.done = reader.done and reader.error is None
        if reader.error is not None and not self._relayed:
            raise _stream_error(reader.error)
        self._relayed = True
        return data

    def finish(self) -> bytes:
        return b""


def _stream_error(error: dict[str, object]) -> UpstreamError:
    inner = error.get("error") if isinstance(error.get("error"), dict) else error
    assert isinstance(inner, dict)
    kind = str(inner.get("type") or inner.get("code") or "api_error")
    status = 529 if kind == "overloaded_error" else 429 if "rate_limit" in kind else 502
    return UpstreamError(str(inner.get("message") or "The provider failed the stream."), status=status,
                         error_type=kind)
