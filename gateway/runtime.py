"""What a request runs on: the objects built from one config (swapped whole on reload, so a request
finishes on the config it started with), and the long-lived services that outlive reloads."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.accounting.retry import RetryQueue
from gateway.auth import Authenticator
from gateway.config import GatewayConfig
from gateway.conversations import Conversations
from gateway.metrics import Metrics
from gateway.ops.watch import FileWatcher
from gateway.pipeline import Pipeline
from gateway.ratelimit import KeyRegistry
from gateway.routing.stats import RoutingStats
from gateway.routing.table import RouteTable
from gateway.stages.shedding import InFlight
from gateway.store.protocol import Store
from gateway.tokens import TokenCounter
from gateway.upstream import UpstreamPool

# A config reload's outcome: whether it was applied, the problems found, the digest now running.
ReloadOutcome = tuple[bool, list[str], str]


@dataclass(frozen=True, slots=True)
class Runtime:
    config: GatewayConfig
    digest: str
    auth: Authenticator
    table: RouteTable
    pipeline: Pipeline
    # The Responses API's stored responses (gateway/conversations).
    conversations: Conversations


@dataclass(slots=True)
class Hooks:
    """What tests may replace before the app starts; the defaults are the real ones. The routing
    statistics' clock, random source and sleep (a fake clock's sleep advances it), and the clock the
    cache's freshness is judged by."""

    routing_clock: Callable[[], float] = time.time
    routing_rng: random.Random | None = None
    routing_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    cache_clock: Callable[[], float] = time.time


@dataclass(slots=True)
class Reloads:
    """Config reloads (file watcher, SIGHUP, admin API): one at a time, under `lock`."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    watcher: FileWatcher | None = None
    # A SIGHUP handler is installed (only in the main thread), to be removed at shutdown.
    sighup: bool = False
    # Reloads started by SIGHUP or a file changed at startup, held until they finish.
    pending: set[asyncio.Task[ReloadOutcome]] = field(default_factory=set)


@dataclass(slots=True)
class Services:
    """What outlives config reloads. The objects built lazily (`keys` at startup, `retry` and
    `routing_stats` with the first config) are None until then."""

    metrics: Metrics
    pool: UpstreamPool
    tokens: TokenCounter
    store: Store | None = None
    runtime: Runtime | None = None
    config_path: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    started: bool = False
    # Runtime gateway keys (the admin API's), refreshed from the store in the background.
    keys: KeyRegistry | None = None
    # Load shedding's counts of calls in flight.
    in_flight: InFlight = field(default_factory=InFlight)
    # Accounting writes that failed while the store was unreachable, retried (and flushed at shutdown).
    retry: RetryQueue | None = None
    routing_stats: RoutingStats | None = None
    hooks: Hooks = field(default_factory=Hooks)
    reloads: Reloads = field(default_factory=Reloads)
    # Applies a config's edge settings (access log, auth throttle, CORS). Set by the app, which builds
    # the edge: the edge's objects live in a layer above this one.
    configure_edge: Callable[[GatewayConfig], None] | None = None

    def current(self) -> Runtime:
        runtime = self.runtime
        if runtime is None:
            raise RuntimeError("the gateway has no config loaded")
        return runtime
