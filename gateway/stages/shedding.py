"""Load shedding: a bound on the calls in flight in this worker (`server.max_in_flight`) and per alias
(`models.<alias>.max_in_flight`). Past it a call is refused at once with 503 and `Retry-After` in the
client's dialect, so a load balancer or the client's own retry takes it elsewhere instead of every
client queueing on a saturated core. A call is in flight from its admission until its answer or
stream has ended (its settle, or the annotate that precedes a deferred settle).

Only calls that a bound applies to are counted: with no bound configured the stage is not in the
pipeline at all (see `bounded`), and with per-alias bounds alone a call to another alias passes
uncounted. So a reload that sets a bound counts the calls admitted from then on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.config import GatewayConfig
from gateway.context import RequestContext
from gateway.errors import OverloadedError
from gateway.metrics import Metrics
from gateway.store import StoreOp

RETRY_AFTER_SECONDS = "1"


class InFlight:
    """The worker's counts; they live as long as the process, across config reloads."""

    def __init__(self) -> None:
        self.total = 0
        self.by_alias: dict[str, int] = {}
        self.held: dict[int, str] = {}


class SheddingStage:
    name = "shedding"
    dialects: frozenset[str] | None = None

    def __init__(self, config: GatewayConfig, counts: InFlight, metrics: Metrics) -> None:
        self.worker_bound = config.server.max_in_flight
        self.alias_bounds: Mapping[str, int] = {
            alias: spec.max_in_flight for alias, spec in config.models.items() if spec.max_in_flight is not None}
        self.counts = counts
        self.metrics = metrics

    @property
    def bounded(self) -> bool:
        """Whether any bound is configured (else no call needs this stage)."""
        return self.worker_bound is not None or bool(self.alias_bounds)

    async def admit(self, ctx: RequestContext) -> None:
        alias = ctx.alias
        alias_bound = self.alias_bounds.get(alias)
        if alias_bound is None and self.worker_bound is None:
            return None
        counts = self.counts
        in_alias = counts.by_alias.get(alias, 0)
        if self.worker_bound is not None and counts.total >= self.worker_bound:
            self._refuse("worker", alias, f"The gateway is at its bound of {self.worker_bound} calls in flight")
        if alias_bound is not None and in_alias >= alias_bound:
            self._refuse("alias", alias, f"The model '{alias}' is at its bound of {alias_bound} calls in flight")
        counts.total += 1
        counts.by_alias[alias] = in_alias + 1
        counts.held[id(ctx)] = alias

    def _refuse(self, scope: str, alias: str, why: str) -> None:
        self.metrics.child(self.metrics.shed, scope, alias).inc()
        raise OverloadedError(f"{why}; try again shortly.", headers={"retry-after": RETRY_AFTER_SECONDS})

    def annotate(self, ctx: RequestContext, reply: object, error: object) -> None:
        self._release(ctx)

    def settle(self, ctx: RequestContext, reply: object, error: object) -> Sequence[StoreOp]:
        self._release(ctx)
        return ()

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None:
        return None

    def _release(self, ctx: RequestContext) -> None:
        alias = self.counts.held.pop(id(ctx), None)
        if alias is None:
            return
        counts = self.counts
        counts.total -= 1
        left = counts.by_alias[alias] - 1
        if left:
            counts.by_alias[alias] = left
        else:
            del counts.by_alias[alias]
