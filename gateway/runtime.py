"""What a request runs on: the objects built from one config (swapped whole on reload, so a request
finishes on the config it started with), and the long-lived services that outlive reloads."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.auth import Authenticator
from gateway.config import GatewayConfig
from gateway.conversations import Conversations
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.routing.table import RouteTable
from gateway.store import Store
from gateway.tokens import TokenCounter
from gateway.upstream import UpstreamPool


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
class Services:
    metrics: Metrics
    pool: UpstreamPool
    tokens: TokenCounter
    store: Store | None = None
    runtime: Runtime | None = None
    config_path: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    started: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def current(self) -> Runtime:
        runtime = self.runtime
        if runtime is None:
            raise RuntimeError("the gateway has no config loaded")
        return runtime
