"""The routing stage: the router's slot in the pipeline. Admit refreshes the shared statistics of the
alias's whole chain (one store read, at most once a second per replica); settle hands the request's
attempt statistics to the pipeline's single settle batch and releases a stream's in-flight count."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.logging import get_logger
from gateway.routing.router import counts_against
from gateway.routing.stats import RoutingStats
from gateway.routing.table import RouteTable
from gateway.store import StoreOp

log = get_logger("routing")


class RoutingStage:
    name = "routing"

    def __init__(self, table: RouteTable, stats: RoutingStats) -> None:
        self.table = table
        self.stats = stats
        # alias → every deployment its requests may reach (fallbacks and context-window fallbacks).
        self.chains: dict[str, tuple[str, ...]] = {alias: self._chain(alias) for alias in table.routes}
        self._last_log = 0.0

    def _chain(self, alias: str) -> tuple[str, ...]:
        seen: list[str] = []
        todo = [alias]
        while todo:
            a = todo.pop(0)
            if a in seen or a not in self.table.routes:
                continue
            seen.append(a)
            cfg = self.table.routes[a].config
            todo.extend([*cfg.fallbacks, *cfg.context_window_fallbacks])
        return tuple(dict.fromkeys(t.id for a in seen for t in self.table.routes[a].targets))

    async def admit(self, ctx: RequestContext) -> None:
        ids = self.chains.get(ctx.alias)
        if ids:
            await self.stats.refresh(ctx.alias, ids)
        return None

    def annotate(self, ctx: RequestContext, reply: object, error: GatewayError | None) -> None:
        """A stream's end, when its settle waits: the deployment is free for the next call's choice."""
        self._release(ctx, error)

    def settle(self, ctx: RequestContext, reply: object, error: GatewayError | None) -> Sequence[StoreOp]:
        self._release(ctx, error)
        return self.stats.settle_ops(ctx)

    def _release(self, ctx: RequestContext, error: GatewayError | None) -> None:
        held = ctx.route_held
        if held is not None:
            ctx.route_held = None
            self.stats.release(held)
            if error is not None and ctx.deployment and counts_against(error):
                route = self.table.get(ctx.served_alias or ctx.alias)
                if route is not None:  # the stream failed after its first byte
                    self.stats.observe(ctx, ctx.deployment, route.config, ok=False)

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None:
        now = time.monotonic()
        if now - self._last_log >= 10.0:
            self._last_log = now
            log.warning("routing statistics not written", extra={"fields": {"error": type(error).__name__}})
