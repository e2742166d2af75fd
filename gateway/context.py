"""The per-request context object that every pipeline stage reads and fills in, and the replies a call
is answered with (a stage's own, such as a cache hit, or the router's)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.config import Limits
from gateway.schemas import Operation


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a gateway key resolved by auth, or the anonymous demo caller."""

    name: str
    team: str | None = None
    key_hash: str | None = None
    # None means every alias; otherwise the aliases this key may call.
    models: frozenset[str] | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    limits: Limits | None = None  # the key's own rate limits

    def may_use(self, alias: str) -> bool:
        return self.models is None or alias in self.models

    @property
    def key_id(self) -> str:
        """The key's identity for everything filed per key (cache scope, spend rows, usage records): a
        prefix of its SHA-256, stable while the key is, and never its display name, which two keys may
        share. Empty for the anonymous caller."""
        return self.key_hash[:16] if self.key_hash else ""


ANONYMOUS = Principal(name="anonymous")


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = False
    # Thinking tokens, already counted in completion_tokens (as OpenAI counts them).
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self, *, details: bool = True) -> dict[str, Any]:
        """The OpenAI `usage` object (prompt tokens include cached ones, as OpenAI counts them)."""
        out: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                               "total_tokens": self.total_tokens}
        if details:
            prompt_details: dict[str, int] = {"cached_tokens": self.cached_tokens}
            if self.cache_write_tokens:
                prompt_details["cache_write_tokens"] = self.cache_write_tokens
            out["prompt_tokens_details"] = prompt_details
            if self.reasoning_tokens:
                out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out


@dataclass(frozen=True, slots=True)
class NativeCall:
    """The client's own body, kept for a deployment that speaks the client's dialect (a Messages
    request to Anthropic, a Responses request to OpenAI): it goes upstream as sent, with only the
    model replaced, and the answer comes back byte for byte."""

    dialect: str
    body: dict[str, Any]
    # Client headers the provider should see too (`anthropic-version`, `anthropic-beta`, ...).
    headers: tuple[tuple[str, str], ...] = ()
    # False when the body cannot go upstream as sent (a Responses turn that continues a conversation
    # the gateway stores: only the gateway knows its `previous_response_id`).
    passthrough: bool = True


class AnswerKeeper(Protocol):
    """Keeps a call's answer before the client sees its end (the stored responses of the Responses
    API: the next turn must find this one on any replica as soon as the client has it)."""

    async def keep_json(self, body: bytes) -> None:
        """A non-streamed answer, as the client will receive it."""
        ...

    async def keep_stream(self, source: object) -> None:
        """Before each piece of a stream goes out: `source` (the dialect's encoder, or the passthrough
        translator) tells whether the stream has reached its end."""
        ...


class PendingSettle(Protocol):
    """What a reply carries of its call's settle (gateway.settlement.Settlement): the endpoint runs
    what is left of it once the answer is out."""

    async def run(self, *, shield: bool = False) -> None: ...

    async def after_answer(self) -> None: ...


@dataclass(slots=True)
class JSONReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # The call's settle; the endpoint runs what is left of it once the answer is out.
    settlement: PendingSettle | None = None


@dataclass(slots=True)
class StreamReply:
    headers: dict[str, str]
    first: bytes
    # Closing it (its `finally`) closes the provider's answer and decides the settle.
    rest: AsyncGenerator[bytes, None]
    # The whole stream is already in `first` (the provider's end marker arrived with it, or a cache
    # replay): `rest` only settles, with no wait on the provider.
    complete: bool = False
    # The settle runs before the stream's response completes (instead of after its `data: [DONE]`):
    # the call holds something the client's next call checks (see gateway.settlement).
    settle_first: bool = False
    settlement: PendingSettle | None = None


# What a pipeline stage or the router answers a call with (the endpoint writes it out).
Reply = JSONReply | StreamReply


@dataclass(slots=True)
class RequestContext:
    request_id: str
    operation: Operation
    body: dict[str, Any]
    alias: str
    stream: bool
    # Request headers the pipeline may consult (lower-cased names).
    headers: dict[str, str]
    principal: Principal = ANONYMOUS
    # The client's API (gateway.dialects): "chat" (OpenAI Chat Completions and its siblings),
    # "messages" (Anthropic) or "responses" (OpenAI Responses). `body` is always the canonical form.
    dialect: str = "chat"
    native: NativeCall | None = None
    # Set by a stage that keeps the answer before its end reaches the client (see AnswerKeeper).
    keeper: AnswerKeeper | None = None
    # Why `body` cannot stand for the client's request (a field the canonical form cannot carry): a
    # deployment that needs a translation fails with this; one that speaks the dialect takes `native`.
    untranslatable: Exception | None = None
    started: float = field(default_factory=time.perf_counter)
    deployment: str | None = None
    provider: str | None = None
    attempts: int = 0
    # Seconds spent waiting on upstreams, summed over attempts, so overhead = total - upstream.
    upstream_seconds: float = 0.0
    first_byte_at: float | None = None
    usage: Usage | None = None
    status: int = 200
    error_type: str | None = None
    # Response headers stages want added (rate-limit counters, cache status, cost…).
    response_headers: dict[str, str] = field(default_factory=dict)
    # --- cache ---
    # True when the answer came from the response cache: no upstream call was made, and `usage`
    # holds the usage stored with the entry (what the call cost when it was made: the saving).
    cache_hit: bool = False
    # Set to a list by a stage that wants to observe a stream: the pipeline appends every piece of
    # OpenAI SSE bytes sent to the client (the last is `data: [DONE]` when the stream completed).
    capture: list[bytes] | None = None
    # Earlier pieces of `capture`, compressed, when no stage replays the stream (see pack_capture).
    capture_packed: list[bytes] = field(default_factory=list)
    # The cache stage's per-request state (gateway.cache.stage).
    cache_state: object | None = None
    # --- end cache ---
    # What the rate limiter reserved for this request (gateway/ratelimit), reconciled at settle.
    ratelimit: Any = None
    # Settle writes normally go out just after the answer. A stage that holds something the client's
    # next call will check (a concurrency slot, reserved tokens, a budget reservation) sets this: its
    # settle is written before the answer, so that call sees it on any replica or worker.
    settle_before_reply: bool = False
    # When the answer was done (perf_counter), for a settle that runs after it.
    finished_at: float | None = None
    # --- routing ---
    # The alias that served, when a fallback did (else None).
    served_alias: str | None = None
    # Per-attempt statistics the routing stage writes in the settle batch (gateway.routing.observations).
    route_observations: list[Any] = field(default_factory=list)
    # Deployment whose in-flight count the request still holds (a stream, until it settles).
    route_held: str | None = None
    # Hedged attempts that lost and were cancelled (deployment ids): accounting charges them too.
    cancelled_attempts: list[str] = field(default_factory=list)
    # The client's session (an alias with sticky_sessions only) and the deployment it is pinned to.
    session_id: str | None = None
    pinned: str | None = None
    # --- end routing ---
    # --- accounting ---
    # True once a stream reached the provider's end marker (False: cut, failed or cancelled).
    stream_complete: bool = False
    # The gateway itself cut the stream short (its shutdown grace ran out): recorded with status 499.
    cut: bool = False
    # The accounting stage's per-request state (its budget reservation, its writes).
    accounting: object | None = None
    # --- end accounting ---
    # --- observability ---
    # The call's cost in micro-USD as accounting priced it (None: unknown or not priced), for the access log.
    cost_micro_usd: int | None = None
    # --- end observability ---

    @property
    def client_wants_usage(self) -> bool:
        options = self.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    def overhead_ms(self, now: float | None = None) -> float:
        end = time.perf_counter() if now is None else now
        return max(0.0, (end - self.started - self.upstream_seconds) * 1000.0)
