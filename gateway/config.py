"""Configuration: typed, strict, frozen pydantic models and the YAML loader.

A config is accepted only whole: every problem (schema errors, unknown references, missing
environment variables) is collected with its YAML path so `gateway config check` can list them all,
and a reload that fails keeps the running config.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

# ---------------------------------------------------------------------------------------------
# Durations and environment interpolation
# ---------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """`500ms`, `30s`, `5m`, `1h` or a bare number of seconds → seconds as a float."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 500ms, 30s, 5m or 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"invalid duration {value!r}: use a number of seconds or 500ms, 30s, 5m, 1h")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _header_safe(value: object) -> object:
    """Surrounding whitespace stripped (a secret read from a mounted file ends with a newline); a
    line break or NUL inside is refused (it would split the HTTP header the value goes into)."""
    if isinstance(value, str):
        value = value.strip()
        if any(c in value for c in "\r\n\0"):
            raise ValueError("must not contain a line break or NUL")
    return value


_PROXY_URL = re.compile(r"(?i)^(?:http://)?(?:[^/@\s]+@)?(?:\[[0-9a-f:.]+\]|[^/:@\s\[\]]+)(?::\d+)?/?$")

# Configured secrets and header values: they end up in upstream request headers.
Secret = Annotated[SecretStr, BeforeValidator(_header_safe)]
HeaderValue = Annotated[str, BeforeValidator(_header_safe)]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config that cannot be used; `problems` lists each with its YAML path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def interpolate_env(node: Any, env: dict[str, str], path: str, problems: list[str]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed YAML tree."""
    if isinstance(node, dict):
        return {k: interpolate_env(v, env, _join(path, str(k)), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_env(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                problems.append(f"{path or '<root>'}: environment variable {name} is not set")
                return ""
            return value

        return _ENV_REF.sub(substitute, node)
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorsConfig(Strict):
    """Opt-in CORS: browsers on these origins may call the gateway (preflight answered by the gateway)."""

    allow_origins: Annotated[list[str], Field(min_length=1, description="Origins allowed, exactly as the "
                                              "browser sends them (https://app.example.com), or '*'.")]
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "DELETE", "OPTIONS"],
                                     description="Methods a preflight may allow.")
    allow_headers: list[str] = Field(default_factory=lambda: ["authorization", "api-key", "content-type",
                                                              "x-request-id", "openai-organization",
                                                              "openai-project"],
                                     description="Request headers a preflight may allow; '*' allows any.")
    expose_headers: list[str] = Field(default_factory=lambda: ["x-request-id", "x-gateway-deployment",
                                                               "x-gateway-attempts", "x-gateway-cache",
                                                               "retry-after"],
                                      description="Response headers the browser's script may read.")
    allow_credentials: bool = Field(False, description="Let the browser send cookies and HTTP auth.")
    max_age: Annotated[int, Field(ge=0, description="Seconds a browser may cache a preflight answer.")] = 600

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsConfig:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials cannot be combined with allow_origins '*' (browsers refuse it)")
        return self


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    workers: Annotated[int, Field(ge=1)] = 1
    max_body_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    # How long SIGTERM waits for in-flight requests and streams to finish.
    shutdown_grace: Duration = 30.0
    # --- edge: what one client connection may hold (per worker process) ---
    max_header_bytes: Annotated[int, Field(ge=1024, description="Bound of a request's line and headers "
                                           "together; past it the answer is 431.")] = 64 * 1024
    max_headers: Annotated[int, Field(ge=8, description="Most header fields in one request; past it "
                                      "the answer is 431.")] = 100
    header_timeout: Annotated[Duration, Field(gt=0, description="From a request's first bytes to the end "
                                             "of its headers; past it the answer is 408.")] = 10.0
    body_timeout: Annotated[Duration, Field(gt=0, description="From the end of a request's headers to the "
                                           "end of its body; past it the answer is 408.")] = 60.0
    keepalive_timeout: Annotated[Duration, Field(gt=0, description="How long a connection may wait for its "
                                                "next (or first) request before it is closed.")] = 5.0
    max_connections: Annotated[int, Field(ge=1, description="Open client connections; one more is "
                                          "answered 503 and closed.")] = 1000
    loop: Literal["uvloop", "asyncio"] = Field(default="uvloop", description="Event loop of `gateway serve` "
                                               "(`--loop` overrides): uvloop, or Python's own asyncio loop.")
    max_in_flight: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Calls (streams until they end) in flight in one worker; one more is "
        "answered 503 with Retry-After at once. Unset: no bound but max_connections.")
    cors: CorsConfig | None = Field(default=None, description="Cross-origin requests from browsers; off "
                                    "when absent.")


class StoreConfig(Strict):
    # Empty: the embedded in-process store (one process only).
    redis_url: str = ""
    # Per-call bound on a store operation; past it the failure policy applies.
    timeout: Duration = 0.25
    failure_policy: Literal["fail_open", "fail_closed"] = "fail_open"
    key_prefix: str = "gw"
    # The embedded store's response cache, in bytes (least recently used entries are evicted first;
    # read at start). Redis bounds its own memory (maxmemory).
    cache_max_bytes: Annotated[int, Field(ge=0)] = 128 * 1024 * 1024
    # --- deploy: Redis topology ---
    # redis_url may be redis://, rediss://, redis+sentinel://h:p,h:p/service?db=0 or
    # redis-cluster://h:p,h:p; `cluster: true` treats a plain redis:// URL as a Cluster seed node.
    cluster: bool = False
    # Replicas that must confirm a settle batch carrying accounting writes (Redis WAIT) before it
    # counts as written; 0: the master's acknowledgement is enough (asynchronous replication).
    replica_acks: Annotated[int, Field(ge=0, le=16)] = 0

    @model_validator(mode="after")
    def _replica_acks_need_replication(self) -> StoreConfig:
        if self.replica_acks and not self.redis_url:
            raise ValueError("replica_acks needs redis_url: the embedded store has no replicas")
        if self.replica_acks and (self.cluster or "cluster" in self.redis_url.partition("://")[0].lower()):
            raise ValueError("replica_acks is for a single Redis or Sentinel; on Cluster use "
                             "per-shard replicas with min-replicas-to-write")
        return self

    @field_validator("redis_url")
    @classmethod
    def _known_topology(cls, value: str) -> str:
        scheme = value.partition("://")[0].lower()
        if value and scheme not in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel",
                                    "redis-cluster", "rediss-cluster"):
            raise ValueError(f"unknown scheme {scheme!r}: use redis://, rediss://, unix://, "
                             "redis+sentinel://host:port,host:port/service or redis-cluster://host:port,...")
        return value
    # --- end deploy ---


class Limits(Strict):
    rpm: Annotated[int, Field(ge=1)] | None = None
    tpm: Annotated[int, Field(ge=1)] | None = None
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    rpd: Annotated[int, Field(ge=1)] | None = None
    tpd: Annotated[int, Field(ge=1)] | None = None


# --- accounting ---
class Budget(Strict):
    """A spending cap in USD per calendar period (UTC); the period resets at 00:00 UTC of the day or
    the 1st of the month."""

    usd: Annotated[float, Field(gt=0)]
    period: Literal["day", "month"] = "month"


class Price(Strict):
    """USD per million tokens. `cached_input` is the price of prompt tokens read from the provider's
    prompt cache, `cache_write` of prompt tokens written to it; each defaults to `input`."""

    input: Annotated[float, Field(ge=0)]
    output: Annotated[float, Field(ge=0)]
    cached_input: Annotated[float, Field(ge=0)] | None = None
    cache_write: Annotated[float, Field(ge=0)] | None = None
    # YAML reads 2026-11-01 as a date: kept as its text.
    date: Annotated[str | None, BeforeValidator(lambda v: None if v is None else str(v))] = None
    source: str | None = None


class AccountingConfig(Strict):
    # The price table. Empty: the one shipped with the gateway (gateway/data/prices.yaml). A relative
    # path is read from the config file's directory. Missing → every price unknown.
    prices_file: str = ""
    # Bound of the usage log (Redis Stream MAXLEN ~, or the in-memory deque).
    usage_log_maxlen: Annotated[int, Field(ge=1)] = 1_000_000
    # Settle writes kept for a retry when the store failed; past this the oldest are logged as lost.
    retry_queue: Annotated[int, Field(ge=0)] = 10_000
    # Seconds between attempts to send the retry queue to the store while it holds writes.
    retry_interval: Annotated[Duration, Field(gt=0)] = 1.0
    # Completion tokens assumed for a budget reservation when the request sets no max_tokens.
    reserve_completion_tokens: Annotated[int, Field(ge=0)] = 256
# --- end accounting ---


class ResponsesConfig(Strict):
    """Stored responses of the Responses API (`store: true`, `previous_response_id`; gateway/conversations)."""

    # How long a stored response lives; a turn that continues a conversation renews the whole chain.
    ttl: Duration = 86400.0
    # The most one stored response (its response object and input items) may take; larger ones are refused.
    max_response_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024
    # The most stored turns a `previous_response_id` chain may have when the gateway rebuilds it.
    max_chain: Annotated[int, Field(ge=1)] = 1000
    # The most bytes a rebuilt chain may take in all.
    max_history_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024


class KeyConfig(Strict):
    name: Annotated[str, Field(min_length=1)]
    team: str | None = None
    key: Secret | None = None
    key_sha256: str | None = None
    models: list[str] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    limits: Limits | None = None
    budget: Budget | None = None  # accounting

    @field_validator("key_sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError("key_sha256 must be 64 hex characters (the SHA-256 of the key)")
        return value.lower() if value else value

    def digest(self) -> str:
        if self.key_sha256:
            return self.key_sha256
        assert self.key is not None
        return hashlib.sha256(self.key.get_secret_value().encode()).hexdigest()


class TeamConfig(Strict):
    limits: Limits | None = None
    budget: Budget | None = None  # accounting


class AuthThrottleConfig(Strict):
    """Failed authentications counted per client address (as the gateway sees it: a fronting proxy's
    address when there is one); past `failures` within `window`, that address is refused with 429
    until the window ends."""

    failures: Annotated[int, Field(ge=0, description="Failed authentications allowed per address and "
                                   "window; 0 turns the throttle off.")] = 30
    window: Annotated[Duration, Field(gt=0, description="The counting window.")] = 60.0
    max_addresses: Annotated[int, Field(ge=1, description="Addresses tracked at once (the oldest are "
                                        "forgotten first).")] = 10_000


class AuthConfig(Strict):
    required: bool = True
    throttle: AuthThrottleConfig = Field(default_factory=AuthThrottleConfig)
    master_key: Secret | None = None
    keys: list[KeyConfig] = Field(default_factory=list)
    teams: dict[str, TeamConfig] = Field(default_factory=dict)


class _ProviderBase(Strict):
    base_url: str | None = None
    headers: dict[str, HeaderValue] = Field(default_factory=dict)
    timeout: Duration = 600.0
    connect_timeout: Duration = 10.0
    # Connections open at once to the provider, per worker; a request past it waits for a free one
    # (a metric and a log line say so). Sized for 1,000 concurrent streams per worker with headroom.
    pool_size: Annotated[int, Field(ge=1)] = 2048
    # How long an idle keep-alive connection is kept for reuse: under the 5 s after which uvicorn
    # (vLLM, many OpenAI-compatible servers) closes one. A shorter `Keep-Alive: timeout=` wins.
    idle_timeout: Annotated[float, Field(ge=0), BeforeValidator(parse_duration)] = 4.0
    # Forward proxy URL (http://[user:password@]host:port); unset: HTTPS_PROXY / HTTP_PROXY /
    # NO_PROXY from the environment; "direct": no proxy whatever the environment says.
    proxy: str | None = None
    # Largest answer body read whole (after gzip/deflate decoding), and largest single SSE event of a
    # stream; past either the attempt fails as a bad upstream answer (and may fall back).
    max_response_bytes: Annotated[int, Field(ge=1024)] = 32 * 1024 * 1024
    max_event_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024

    @field_validator("proxy")
    @classmethod
    def _http_proxy(cls, value: str | None) -> str | None:
        if value is not None and value != "direct" and not _PROXY_URL.match(value):
            raise ValueError('an http:// proxy URL, or "direct"')
        return value
    # TLS: a CA bundle to trust instead of the system's, and (for tests against self-signed
    # servers only) whether to verify certificates at all.
    ca_file: str | None = None
    verify_tls: bool = True


# The connection settings every HTTP provider shares (gateway.upstream reads these alone).
ProviderSettings = _ProviderBase


class OpenAIProvider(_ProviderBase):
    """OpenAI itself and every OpenAI-compatible server (vLLM, Ollama, Groq, Together, …)."""

    type: Literal["openai"]
    api_key: Secret | None = None
    organization: str | None = None
    # Whether the server speaks the OpenAI Responses API (`/responses`), so Responses requests pass
    # through untranslated. Default: true for api.openai.com (no base_url), false for other servers.
    responses: bool | None = None


class AzureProvider(_ProviderBase):
    type: Literal["azure"]
    api_key: Secret | None = None
    # Entra ID bearer token, as an alternative to the api-key header.
    azure_ad_token: Secret | None = None
    api_version: str = "2024-10-21"


class AnthropicProvider(_ProviderBase):
    type: Literal["anthropic"]
    api_key: Secret | None = None
    anthropic_version: str = "2023-06-01"


class GeminiProvider(_ProviderBase):
    type: Literal["gemini"]
    api_key: Secret | None = None
    # Vertex AI: set these (and a bearer token) instead of an API key.
    vertex_project: str | None = None
    vertex_location: str | None = None
    access_token: Secret | None = None


class BedrockProvider(_ProviderBase):
    type: Literal["bedrock"]
    region: str = "us-east-1"
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None


class MockProvider(_ProviderBase):
    """The built-in provider: deterministic answers with configurable timing and failures."""

    type: Literal["mock"]
    latency: Duration = 0.0
    ttft: Duration = 0.0
    chunk_delay: Duration = 0.0
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    error_status: Annotated[int, Field(ge=400, le=599)] = 500
    seed: int = 0


ProviderConfig = Annotated[
    OpenAIProvider | AzureProvider | AnthropicProvider | GeminiProvider | BedrockProvider | MockProvider,
    Field(discriminator="type"),
]


class Deployment(Strict):
    provider: str
    model: Annotated[str, Field(min_length=1)]
    # Name used in headers, metrics and logs; defaults to "provider/model".
    name: str | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0
    # `strategy: priority`: lowest first; unset, the deployment's position in the alias's list.
    priority: int | None = None
    timeout: Duration | None = None
    ttft_timeout: Duration | None = None
    # Parameters merged into every upstream request body (client values win).
    params: dict[str, Any] = Field(default_factory=dict)
    limits: Limits | None = None
    # accounting: this deployment's price, or "section/model" naming an entry of the price table.
    price: Price | str | None = None
    # --- routing ---
    # Blended USD per million tokens, for `strategy: cost` (a price table, when configured, wins).
    cost_per_mtok: Annotated[float, Field(ge=0)] | None = None
    # --- end routing ---

    @property
    def id(self) -> str:
        return self.name or f"{self.provider}/{self.model}"


# --- cache ---
class CacheConfig(Strict):
    """The response cache for an alias (`models.<alias>.cache`) or every alias (top-level `cache`;
    an alias's own fields override it, `enabled: false` opts an alias out)."""

    enabled: bool = True
    ttl: Duration = 3600.0
    scope: Literal["key", "team", "global"] = "key"
    max_entry_bytes: Annotated[int, Field(ge=1)] = 1024 * 1024
    # Store answers cut short by max_tokens (finish_reason "length").
    cache_length_finish: bool = False
    # How long identical concurrent misses wait for the first one's answer before calling upstream.
    lock_wait: Duration = 30.0

    @field_validator("ttl")
    @classmethod
    def _positive_ttl(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("the cache ttl must be positive")
        return value
# --- end cache ---

# --- routing ---
class CooldownConfig(Strict):
    """Circuit breaker: `failures` failures in a row, or a `failure_rate` share of at least `min_calls`
    calls within `window`, open a deployment for `base`, doubling on each consecutive opening up to
    `max`; then a single probe decides. Rare errors at any traffic are left to retries."""

    failures: Annotated[int, Field(ge=1, description="Failures in a row (each within `window` of the "
                                   "last) that open the circuit at once, whatever the traffic.")] = 5
    failure_rate: Annotated[float, Field(gt=0, le=1, description="Share of failed calls within `window` "
                                         "that opens the circuit, once `min_calls` calls were seen.")] = 0.5
    min_calls: Annotated[int, Field(ge=1, description="Calls within `window` before `failure_rate` "
                                    "applies.")] = 20
    window: Annotated[Duration, Field(gt=0, description="The counting window of `failure_rate` (restarted "
                                      "once it is this old) and the longest gap inside a run of failures.")] = 10.0
    base: Duration = 5.0
    max: Duration = 300.0


class HedgeConfig(Strict):
    """Opt-in: start a second attempt on another deployment when the first has not produced its first
    token after `after` (`p95`: the deployment's recent p95 TTFT, or a duration)."""

    enabled: bool = False
    after: Literal["p95"] | Duration = "p95"
    # Used with `after: p95` until the deployment has enough samples.
    min_delay: Duration = 0.05


Strategy = Literal["weighted", "priority", "latency", "least-busy", "cost"]
# --- end routing ---


class AliasConfig(Strict):
    deployments: Annotated[list[Deployment], Field(min_length=1)]
    strategy: Strategy = "weighted"
    timeout: Duration = 600.0
    ttft_timeout: Duration | None = None
    # A streamed answer that sends nothing (not even a keep-alive) for this long after its first
    # event is cut with an error event. Generous: some models think for a while between events.
    stream_idle_timeout: Annotated[float, Field(gt=0), BeforeValidator(parse_duration)] = 120.0
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    fallbacks: list[str] = Field(default_factory=list)
    limits: Limits | None = None
    # Drop request parameters a provider cannot honour instead of answering 400.
    drop_unsupported_params: bool = False
    cache: CacheConfig | None = None  # --- cache ---

    max_in_flight: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Calls of this alias in flight in one worker; one more is answered 503 "
        "with Retry-After at once. Unset: no bound.")
    # --- routing ---
    # Larger-context aliases tried, in order, when an upstream answers `context_length_exceeded`.
    context_window_fallbacks: list[str] = Field(default_factory=list)
    cooldown: CooldownConfig = Field(default_factory=CooldownConfig)
    hedge: HedgeConfig = Field(default_factory=HedgeConfig)
    # When every deployment is cooling down (and no fallback is usable), wait up to this long for the
    # earliest recovery instead of failing at once. 0 fails at once.
    wait_for_recovery: Duration = 0.0
    # Session-sticky routing: requests of one client session (Claude Code's X-Claude-Code-Session-Id,
    # Codex's session_id, a `prompt_cache_key`) go to the deployment that served the session last
    # while it is healthy, so the provider's prompt cache stays warm. Pins are shared through the store.
    sticky_sessions: bool = False
    # How long a session's pin lives after its last request.
    sticky_ttl: Duration = 3600.0
    # --- end routing ---


# --- rate limits ---
class LimitsDefaults(Strict):
    """Settings of the limiter itself (the limits are on keys, teams, aliases and deployments)."""

    # Completion tokens reserved for a request that does not set max_tokens / max_completion_tokens.
    max_tokens_cap: Annotated[int, Field(ge=0)] = 4096
    # How long a concurrency lease lives without being released (a crashed replica's slots come back
    # after this). Default: the alias's timeout plus 30s.
    lease_ttl: Duration | None = None
    # How often each replica rereads the runtime keys (admin API); bounds how long a revoked key works.
    key_refresh: Annotated[float, Field(gt=0, le=1.0), BeforeValidator(parse_duration)] = 0.5
# --- end rate limits ---


# --- observability ---
class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    # One line per request on the `gateway.access` logger (request id, key name, alias, deployment,
    # status, latency, overhead, tokens, cost, cache, attempts).
    access_log: bool = True
    # Put the request's messages/prompt/input in the access line. Off: prompts are never logged.
    log_prompts: bool = False


class MetricsConfig(Strict):
    # A scrape must send `Authorization: Bearer <token>` (Prometheus: `authorization: {credentials: ...}`).
    bearer_token: Secret | None = Field(default=None, description="Bearer token /metrics requires; "
                                           "unset: /metrics is open.")
    # Key names as label values (team cost/tokens, key budgets). Off: only teams (bounded by the config).
    key_labels: bool = False
    # How often the store is pinged (gateway_store_up, store latency) and budget gauges refreshed.
    check_interval: Duration = 15.0


class ReloadConfig(Strict):
    # Poll the config file (and the price table) for changes; 0 turns the watcher off
    # (SIGHUP and POST /admin/config/reload still reload).
    watch_interval: Duration = 1.0
# --- end observability ---


class GatewayConfig(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, AliasConfig] = Field(default_factory=dict)
    # Model names clients send that no alias is called, routed by glob pattern to an alias, tried in
    # order after the exact names (`claude-sonnet-*: claude`: Claude Code sends provider model names).
    model_patterns: dict[str, str] = Field(default_factory=dict)
    accounting: AccountingConfig = Field(default_factory=AccountingConfig)
    cache: CacheConfig | None = None  # --- cache --- (default for every alias)
    limits_defaults: LimitsDefaults = Field(default_factory=LimitsDefaults)  # rate limits
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)  # stored Responses conversations
    # --- observability ---
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    reload: ReloadConfig = Field(default_factory=ReloadConfig)
    # --- end observability ---

    def digest(self) -> str:
        """A short hash of the effective config (secrets included only as their hash)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Loading and cross-reference checks
# ---------------------------------------------------------------------------------------------


def load_config(path: str | Path, env: dict[str, str] | None = None, *, empty_ok: bool = True) -> GatewayConfig:
    """Read, interpolate, validate and cross-check a config file; raise ConfigError listing every
    problem with its YAML path. Relative paths in it are read from the file's directory. A file with
    nothing in it (or comments only) is the embedded defaults, or with `empty_ok=False` a problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    return parse_config(text, env=env, source=str(path), base_dir=Path(path).resolve().parent, empty_ok=empty_ok)


def parse_config(text: str, env: dict[str, str] | None = None, source: str = "<config>",
                 base_dir: Path | None = None, *, empty_ok: bool = True) -> GatewayConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{source}:{where} invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if raw is None:
        if not empty_ok:
            raise ConfigError([f"{source}: the file is empty (or holds only comments); the running config "
                               "is kept"])
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping"])
    problems: list[str] = []
    raw = interpolate_env(raw, dict(os.environ) if env is None else env, "", problems)
    if base_dir is not None:
        _resolve_paths(raw, base_dir)
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_format_validation(exc))
        raise ConfigError(problems) from None
    problems.extend(check_references(config))
    if problems:
        raise ConfigError(problems)
    return config


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """A file named in the config is found from the config's own directory, wherever the gateway was
    started (the working directory of a service manager or a container is rarely the config's)."""
    accounting = raw.get("accounting")
    if isinstance(accounting, dict):
        prices = accounting.get("prices_file")
        if isinstance(prices, str) and prices and not Path(prices).is_absolute():
            accounting["prices_file"] = str(base_dir / prices)


def _format_validation(exc: ValidationError) -> Iterator[str]:
    for error in exc.errors(include_url=False, include_input=False):
        path = ""
        for i, part in enumerate(error["loc"]):
            if isinstance(part, int):
                path += f"[{part}]"
            elif i == 2 and error["loc"][0] == "providers" and part in _PROVIDER_TAGS:
                continue  # the discriminated union names its member; the path needs no tag
            else:
                path = _join(path, str(part))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field" + did_you_mean(str(error["loc"][-1]), _fields_at(error["loc"][:-1]))
        elif error["type"] == "union_tag_invalid":
            tag = str(error.get("ctx", {}).get("tag", ""))
            message = (f"unknown provider type '{tag}'{did_you_mean(tag, _PROVIDER_TAGS)} "
                       f"(expected one of {', '.join(sorted(_PROVIDER_TAGS))})")
        yield f"{path or '<root>'}: {message}"


_PROVIDER_TAGS = {"openai", "azure", "anthropic", "gemini", "bedrock", "mock"}


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest candidate to a misspelt name, or nothing."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The field names the model at a validation error's location accepts."""
    node: Any = GatewayConfig
    for part in loc:
        node = _strip(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = field.annotation
        elif typing.get_origin(node) in (list, dict):
            node = typing.get_args(node)[-1]
        elif part in _PROVIDER_TAGS:
            members = [m for m in typing.get_args(node)
                       if isinstance(m, type) and issubclass(m, BaseModel) and "type" in m.model_fields
                       and typing.get_args(m.model_fields["type"].annotation) == (part,)]
            if not members:
                return []
            node = members[0]
    node = _strip(node)
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _strip(node: Any) -> Any:
    """`Annotated[X, ...]` → X, and `X | None` → X when only one model is in the union."""
    while True:
        origin = typing.get_origin(node)
        args = typing.get_args(node)
        if origin is Annotated:
            node = args[0]
        elif origin in (typing.Union, types.UnionType) and len([a for a in args if a is not type(None)]) == 1:
            node = next(a for a in args if a is not type(None))
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(models) == 1:
                return models[0]
            return node
        else:
            return node


def check_references(config: GatewayConfig) -> list[str]:
    problems: list[str] = []
    for alias, spec in config.models.items():
        seen: set[str] = set()
        for i, deployment in enumerate(spec.deployments):
            where = f"models.{alias}.deployments[{i}]"
            if deployment.provider not in config.providers:
                problems.append(f"{where}.provider: unknown provider '{deployment.provider}'"
                                + did_you_mean(deployment.provider, config.providers))
            if deployment.id in seen:
                problems.append(f"{where}: duplicate deployment '{deployment.id}' (give it a name)")
            seen.add(deployment.id)
        for i, fallback in enumerate(spec.fallbacks):
            if fallback not in config.models:
                problems.append(f"models.{alias}.fallbacks[{i}]: unknown model alias '{fallback}'"
                                + did_you_mean(fallback, config.models))
            elif fallback == alias:
                problems.append(f"models.{alias}.fallbacks[{i}]: an alias cannot fall back to itself")
        for i, fallback in enumerate(spec.context_window_fallbacks):  # --- routing ---
            if fallback not in config.models:
                problems.append(f"models.{alias}.context_window_fallbacks[{i}]: unknown model alias '{fallback}'"
                                + did_you_mean(fallback, config.models))
            elif fallback == alias:
                problems.append(f"models.{alias}.context_window_fallbacks[{i}]: an alias cannot fall back to itself")
    problems.extend(_fallback_cycles(config))
    for pattern, alias in config.model_patterns.items():
        if alias not in config.models:
            problems.append(f"model_patterns.{pattern}: unknown model alias '{alias}'"
                            + did_you_mean(alias, config.models))
    for name, provider in config.providers.items():
        if isinstance(provider, AzureProvider) and not provider.base_url:
            problems.append(f"providers.{name}.base_url: required for Azure (https://NAME.openai.azure.com)")
    names: set[str] = set()
    digests: set[str] = set()
    for i, key in enumerate(config.auth.keys):
        where = f"auth.keys[{i}]"
        if (key.key is None) == (key.key_sha256 is None):
            problems.append(f"{where}: give exactly one of 'key' or 'key_sha256'")
            continue
        if key.key is not None and not key.key.get_secret_value():
            problems.append(f"{where}.key: empty key")
            continue
        if key.name in names:
            problems.append(f"{where}.name: duplicate key name '{key.name}'")
        names.add(key.name)
        digest = key.digest()
        if digest in digests:
            problems.append(f"{where}: the same key is declared twice")
        digests.add(digest)
        for j, model in enumerate(key.models or []):
            if model not in config.models:
                problems.append(f"{where}.models[{j}]: unknown model alias '{model}'"
                                + did_you_mean(model, config.models))
    return problems


def _fallback_cycles(config: GatewayConfig) -> list[str]:
    problems: list[str] = []
    reported: set[frozenset[str]] = set()

    def visit(alias: str, trail: list[str]) -> None:
        for fallback in config.models[alias].fallbacks:
            if fallback not in config.models or fallback == alias:
                continue
            if fallback in trail:
                cycle = [*trail[trail.index(fallback):], fallback]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    problems.append(f"models.{cycle[0]}.fallbacks: cycle {' -> '.join(cycle)}")
                continue
            visit(fallback, [*trail, fallback])

    for alias in config.models:
        visit(alias, [alias])
    return problems


def default_config_path() -> str:
    return os.environ.get("GATEWAY_CONFIG", "config/gateway.yaml")
