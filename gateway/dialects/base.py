"""The dialect contract: a client API as a pair of codecs around the canonical call.

`parse` turns the client's body into the canonical request (OpenAI Chat Completions form, see
DESIGN.md) and keeps the body as sent for a deployment that speaks the same API (`NativeCall`).
On the way back, a canonical answer is encoded into the client's shape (`encode_answer`, a
`StreamEncoder` per stream); an answer that came from a same-dialect deployment is already in it and
passes untouched, its usage read on the way (`usage_reader`, `usage_of_body`). Errors leave in the
client's shape too (`error`, `error_event`). Codecs are pure: no I/O, no Starlette.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.context import NativeCall, RequestContext, Usage
from gateway.errors import AllAttemptsFailedError, GatewayError
from gateway.providers.base import ParsedResponse
from gateway.schemas import Operation


@dataclass(slots=True)
class ParsedCall:
    """What a dialect makes of a client body."""

    body: dict[str, Any]  # the canonical request
    native: NativeCall | None = None
    # A field the canonical form cannot carry: fatal only for a deployment that needs a translation.
    untranslatable: GatewayError | None = None


class StreamEncoder(Protocol):
    """Canonical SSE bytes (split anywhere) in, the dialect's SSE bytes out."""

    started: bool

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...

    def fail(self, error: GatewayError) -> bytes: ...


class UsageReader(Protocol):
    """Reads usage from a same-dialect provider stream without changing its bytes."""

    usage: Usage | None
    done: bool
    error: dict[str, Any] | None

    def feed(self, data: bytes) -> None: ...


class Dialect(Protocol):
    name: str
    operation: Operation

    def parse(self, body: object, headers: Mapping[str, str]) -> ParsedCall:
        """Validate the client's body (a 400 in the client's shape names the bad field)."""
        ...

    def encode_answer(self, answer: ParsedResponse, ctx: RequestContext) -> bytes:
        """A non-streamed answer in the client's shape (as it came when it is `native`)."""
        ...

    def stream_encoder(self, ctx: RequestContext) -> StreamEncoder | None:
        """The encoder for one canonical stream; None when the canonical bytes are the client's."""
        ...

    def error(self, error: GatewayError) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and extra headers of an error answer."""
        ...

    def error_event(self, error: GatewayError) -> bytes:
        """The event that ends a stream that fails after its first bytes (no encoder state)."""
        ...

    def usage_reader(self) -> UsageReader:
        ...

    def usage_of_body(self, body: bytes) -> Usage | None:
        ...


def passthrough_error(error: GatewayError, dialect: str) -> tuple[int, bytes] | None:
    """The provider's own error answer, when the failed attempt spoke the client's dialect: passed
    through unmodified (clients such as Claude Code match on its wording)."""
    source = error.last if isinstance(error, AllAttemptsFailedError) else error
    native = source.native_answer
    if native is not None and native[0] == dialect:
        return native[1], native[2]
    return None
