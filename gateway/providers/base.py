"""The provider adapter contract: pure translation between the OpenAI schema and a provider's wire
format. Adapters do no I/O; `gateway.upstream` sends what they build and hands back what arrived."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import orjson

from gateway.context import NativeCall, Usage
from gateway.errors import GatewayError, UpstreamProtocolError
from gateway.schemas import Operation


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool
    # Facts a credential style may need (e.g. the AWS service name for SigV4).
    signing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Capabilities:
    operations: frozenset[Operation]
    streaming: bool = True
    tools: bool = True
    vision: bool = True


@dataclass(slots=True)
class ParsedResponse:
    """A complete (non-streamed) answer in OpenAI form. `body` is what the client receives: the
    upstream bytes untouched when no translation was needed, so a passthrough costs no re-encoding."""

    data: dict[str, Any]
    body: bytes
    usage: Usage | None
    # `body` is in the client's own dialect (a same-dialect deployment answered): `data` is not read.
    native: bool = False


class StreamTranslator(Protocol):
    """Turns a provider's streamed bytes, split anywhere, into OpenAI SSE bytes."""

    usage: Usage | None
    finish_reason: str | None
    # True once the provider's end-of-stream marker arrived; a stream that ends without it was cut.
    done: bool

    def feed(self, data: bytes) -> bytes:
        """Consume bytes from upstream; return OpenAI SSE bytes ready for the client (may be empty).
        Raises GatewayError when the provider reports an error inside the stream."""
        ...

    def finish(self) -> bytes:
        """Called at upstream end of stream: whatever remains, ending with `data: [DONE]`."""
        ...


class ProviderAdapter(Protocol):
    capabilities: Capabilities

    def build_request(
        self, operation: Operation, body: dict[str, Any], model: str, *, stream: bool,
        drop_unsupported_params: bool | None = None,
    ) -> UpstreamRequest:
        """Translate an OpenAI request (already validated; `model` is the upstream model name).
        A parameter the provider cannot honour is a 400 naming it, unless `drop_unsupported_params`
        (the alias's setting) says to drop it."""
        ...

    def parse_response(self, operation: Operation, status: int, body: bytes, *,
                       request: Mapping[str, Any] | None = None, model: str | None = None) -> ParsedResponse:
        """Translate a successful (2xx) provider answer into OpenAI form; `request` is the client's
        OpenAI request, for answers whose translation depends on it; `model` the upstream model name,
        for providers whose answers do not carry one."""
        ...

    def stream_translator(self, operation: Operation, *, client_wants_usage: bool,
                          model: str | None = None) -> StreamTranslator:
        ...

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        """Map a provider error answer to the gateway's hierarchy, keeping the provider's message."""
        ...


@runtime_checkable
class SpeaksDialect(Protocol):
    """An adapter whose provider also speaks a client dialect besides Chat Completions (Anthropic
    speaks Messages; OpenAI, Responses): a request in that dialect goes upstream as the client sent
    it, only the model replaced."""

    def native_request(self, call: NativeCall, model: str, *, stream: bool) -> UpstreamRequest | None:
        """The upstream request for the client's own body, or None when this provider does not speak
        `call.dialect`."""
        ...


def load_json_object(body: bytes, provider: str = "The provider") -> dict[str, Any]:
    """A provider's JSON answer that must be an object; anything else is a protocol error."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(f"{provider} answered with invalid JSON.") from None
    if not isinstance(data, dict):
        raise UpstreamProtocolError(f"{provider} answered with a JSON value that is not an object.")
    return data


# More tokens than any model reads or writes in one call: a count past it is a broken answer, and
# accepting it would turn one bad reply into a bill (and counters) no store can hold.
MAX_TOKEN_COUNT = 10**9


def token_count(raw: Mapping[str, Any], name: str) -> int:
    """One token count of a provider's usage object: every adapter's usage enters through here. Absent
    or null is 0; anything but an integer in [0, MAX_TOKEN_COUNT) fails the attempt as a bad upstream
    answer (the router may fall back), never reaching the cost, the spend counters or the usage log."""
    value = raw.get(name)
    if type(value) is int and 0 <= value < MAX_TOKEN_COUNT:  # (not isinstance: True is an int too)
        return value
    if value is None:
        return 0
    shown = repr(value) if isinstance(value, (int, float)) and len(repr(value)) <= 40 else type(value).__name__
    raise UpstreamProtocolError(f"The provider reported an invalid usage count {name}={shown} "
                                f"(expected an integer from 0 to {MAX_TOKEN_COUNT - 1}).")


def usage_with_cache(raw: object, *, uncached: str, output: str, cache_read: str, cache_write: str) -> Usage | None:
    """Usage from providers whose input count leaves out prompt-cache reads and writes (Anthropic,
    Bedrock, each with its own field names). OpenAI's prompt_tokens include every prompt token, so
    the three are summed."""
    if not isinstance(raw, dict):
        return None
    read = token_count(raw, cache_read)
    write = token_count(raw, cache_write)
    return Usage(prompt_tokens=token_count(raw, uncached) + read + write,
                 completion_tokens=token_count(raw, output), cached_tokens=read, cache_write_tokens=write)
