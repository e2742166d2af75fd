"""The route table: aliases resolved to their deployments and providers once per config load, so
the hot path never scans the config."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import AliasConfig, Deployment, GatewayConfig
from gateway.providers import Provider, build_provider
from gateway.routing.patterns import resolve_alias

RESOLVED_NAMES = 1024


@dataclass(frozen=True, slots=True)
class Target:
    alias: str
    deployment: Deployment
    provider: Provider
    id: str
    timeout: float
    ttft_timeout: float | None
    drop_unsupported: bool
    # USD per million tokens for the cost strategy (mean of input and output); None: unknown.
    cost: float | None = None
    # Place under `strategy: priority`: the deployment's `priority`, else its position in the list.
    rank: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    alias: str
    config: AliasConfig
    targets: tuple[Target, ...]
    weights: tuple[float, ...]


class RouteTable:
    def __init__(self, config: GatewayConfig, costs: Mapping[str, float | None] | None = None) -> None:
        """`costs`: USD per million tokens by deployment id, from the price table (accounting); a
        deployment's own `cost_per_mtok` comes first, and without `costs` its inline price counts."""
        self.created = time.time()
        self.providers: dict[str, Provider] = {
            name: build_provider(name, cfg) for name, cfg in config.providers.items()}
        self.routes: dict[str, Route] = {}
        self.patterns = tuple(config.model_patterns.items())
        self._resolved: dict[str, str] = {}
        for alias, spec in config.models.items():
            targets = tuple(
                Target(alias=alias, deployment=d, provider=self.providers[d.provider], id=d.id,
                       timeout=d.timeout or spec.timeout, ttft_timeout=d.ttft_timeout or spec.ttft_timeout,
                       drop_unsupported=spec.drop_unsupported_params,
                       cost=d.cost_per_mtok if d.cost_per_mtok is not None or costs is None else costs.get(d.id),
                       rank=d.priority if d.priority is not None else position)
                for position, d in enumerate(spec.deployments))
            self.routes[alias] = Route(alias, spec, targets, tuple(d.weight for d in spec.deployments))

    def get(self, alias: str) -> Route | None:
        return self.routes.get(alias)

    def resolve(self, name: str) -> str | None:
        """The alias a requested model name stands for: the alias of that name, else the alias of the
        first `model_patterns` glob it matches; None when there is none."""
        if name in self.routes:
            return name
        alias = self._resolved.get(name)
        if alias is None:
            alias = resolve_alias(name, (), self.patterns) or ""
            if len(self._resolved) < RESOLVED_NAMES:  # names come from clients: remember only so many
                self._resolved[name] = alias
        return alias or None

    @property
    def provider_map(self) -> Mapping[str, Provider]:
        return self.providers
