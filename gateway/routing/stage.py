"""The routing stage: the router's slot in the pipeline. Admit refreshes the shared statistics of the
alias's whole chain (one store read, at most once a second per replica); settle hands the request's
attempt statistics to the pipeline's single settle batch and releases a stream's in-flight count."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.context import RequestContext
from gateway.errors import GatewayError, StoreUnavailableError
from gateway.logs import get_logger
from gateway.routing.router import counts_against
from gateway.routing.sessions import pin_key, session_of
from gateway.routing.stats import RoutingStats
from gateway.routing.store import SESSION_PIN, SessionStore
from gateway.routing.table import RouteTable
from gateway.store import StoreOp

log = get_logger("routing")


class RoutingStage:
    name = "routing"
    dialects: frozenset[str] | None = None

    def __init__(self, table: RouteTable, stats: RoutingStats, sessions: SessionStore | None = None) -> None:
        self.table = table
        self.stats = stats
        self.sessions = sessions
        # alias → every deployment its requests may reach (fallbacks and context-window fallbacks).
        self.chains: dict[str, tuple[str, ...]] = {alias: self._chain(alias) for alias in table.routes}
        # The aliases whose calls look up their session's pin.
        self.sticky = frozenset(alias for alias, route in table.routes.items()
                                if route.config.sticky_sessions) if sessions is not None else frozenset()
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
        if ctx.alias in self.sticky and self.sessions is not None:
            await self._find_pin(ctx, self.sessions)
        return None

    async def _find_pin(self, ctx: RequestContext, sessions: SessionStore) -> None:
        ctx.session_id = session_of(ctx.headers, ctx.native.body if ctx.native is not None else ctx.body)
        if ctx.session_id is None:
            return
        try:
            ctx.pinned = await sessions.session_lookup(pin_key(ctx.alias, ctx.session_id))
        except StoreUnavailableError:
            self._log_trouble("session pin not read")

    def annotate(self, ctx: RequestContext, reply: object, error: GatewayError | None) -> None:
        """Nothing the answer needs: only a stream holds its deployment, and settle frees it."""

    def settle(self, ctx: RequestContext, reply: object, error: GatewayError | None) -> Sequence[StoreOp]:
        self._release(ctx, error)
        ops = self.stats.settle_ops(ctx)
        if ctx.session_id is not None and error is None and ctx.deployment and not ctx.served_alias:
            # (Renewed on every call: the pin lives as long as the session is active.)
            route = self.table.get(ctx.alias)
            if route is not None:
                pin = SESSION_PIN(pin_key(ctx.alias, ctx.session_id), ctx.deployment, route.config.sticky_ttl)
                return [*ops, pin]
        return ops

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
        self._log_trouble("routing statistics not written", type(error).__name__)

    def _log_trouble(self, what: str, error: str = "StoreUnavailableError") -> None:
        now = time.monotonic()
        if now - self._last_log >= 10.0:
            self._last_log = now
            log.warning(what, extra={"fields": {"error": error}})
