"""Prometheus metrics: the only prometheus_client importer.

Label values are bounded by the config (aliases, deployments, providers) or by small closed sets
(status class, error type); never keys, users, prompts or request ids. Children are cached per label
tuple so the hot path does a dict lookup, not a label resolution.

The request path updates tallies, not prometheus_client's children: a child takes a mutex and makes
three to six Python calls per update, and a request makes about twenty updates (a tenth of the
gateway's work per request, measured). A tally adds to plain attributes; whatever reads the
registry (the /metrics endpoint, `registry.get_sample_value`) first folds every tally into its child,
so a scrape shows every update made before it. Tallies belong to the event loop's thread, which is
where /metrics reads them. With several workers (prometheus multiprocess mode) another process reads
this one's files at any time, so updates go straight to the children there.
"""

from __future__ import annotations

import contextlib
import os
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Milliseconds matter for the gateway's own overhead; LLM calls run for seconds to minutes.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
# Gaps between streamed tokens: a few ms to a second.
INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1)
STORE_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
# `gateway serve --workers N` sets this before the workers import prometheus_client: every worker
# writes its values to files there and /metrics merges them (prometheus multiprocess mode).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Sum:
    """A child's net change since the last fold."""

    __slots__ = ("child", "pending")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.pending = 0.0

    def fold(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self.child.inc(amount)


class CounterTally(_Sum):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:  # as prometheus_client's Counter: here, not later in a scrape
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.pending += amount


class GaugeTally(_Sum):
    """`set` goes to the child at once."""

    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        self.pending += amount

    def dec(self, amount: float = 1.0) -> None:
        self.pending -= amount

    def set(self, value: float) -> None:
        self.pending = 0.0
        self.child.set(value)


class HistogramTally:
    """A histogram child's observations since the last fold: a count per bucket and their sum."""

    __slots__ = ("bounds", "child", "counts", "seen", "sum")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds = tuple(child._upper_bounds)  # ends with +Inf: every value has a bucket
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.seen = False

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is >= amount, as Histogram.observe picks it.
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount
        self.seen = True

    def fold(self) -> None:
        if not self.seen:
            return
        buckets = self.child._buckets
        for i, n in enumerate(self.counts):
            if n:
                buckets[i].inc(n)
                self.counts[i] = 0
        self.child._sum.inc(self.sum)
        self.sum = 0.0
        self.seen = False


_TALLIES = {"counter": CounterTally, "gauge": GaugeTally, "histogram": HistogramTally}


class _FoldFirst:
    """Registered before every metric: a registry read folds the tallies in, then collects."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        self.metrics.fold()
        return iter(())


# Why the server refused or cut a client connection (gateway_connections_refused_total's `reason`).
REFUSAL_REASONS = ("max_connections", "headers_too_large", "header_timeout", "body_timeout", "bad_request")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._tallies: dict[tuple[object, ...], Any] = {}
        # Several workers: another process reads this one's files whenever it is scraped (see above).
        self._tallied = not multiprocess_mode()
        r.register(_FoldFirst(self))
        self.requests = Counter("gateway_requests", "Requests answered, by alias, deployment and status class",
                                ["alias", "provider", "deployment", "status_class"], registry=r)
        self.dialect_requests = Counter("gateway_dialect_requests", "Requests answered, by client API "
                                        "(chat, messages, responses) and status class",
                                        ["dialect", "status_class"], registry=r)
        self.request_seconds = Histogram("gateway_request_duration_seconds", "End-to-end request latency",
                                         ["alias", "stream"], buckets=LATENCY_BUCKETS, registry=r)
        self.overhead_seconds = Histogram("gateway_overhead_seconds",
                                          "Time spent in the gateway itself, excluding upstream waits",
                                          ["alias"], buckets=OVERHEAD_BUCKETS, registry=r)
        self.ttft_seconds = Histogram("gateway_time_to_first_token_seconds", "Time to first streamed byte",
                                      ["alias", "deployment"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_errors = Counter("gateway_upstream_errors", "Failed upstream attempts by error type",
                                       ["provider", "deployment", "error"], registry=r)
        self.tokens = Counter("gateway_tokens", "Tokens by direction",
                              ["alias", "deployment", "direction"], registry=r)
        self.estimated_tokens = Counter("gateway_estimated_token_counts",
                                        "Token counts estimated because no tokenizer encoding could be loaded",
                                        ["encoding"], registry=r)
        self.in_flight = Gauge("gateway_in_flight_requests", "Requests being served", registry=r,
                               multiprocess_mode="livesum")
        self.config_info = Gauge("gateway_config_info", "The loaded config's hash (1: loaded now)", ["hash"],
                                 registry=r, multiprocess_mode="livemax")
        self.config_reloads = Counter("gateway_config_reloads", "Config reloads by result", ["result"],
                                      registry=r)
        self.store_up = Gauge("gateway_store_up", "1 when the shared store answered its last check",
                              registry=r, multiprocess_mode="livemin")
        self.store_errors = Counter("gateway_store_errors", "Store operations that failed, by stage",
                                    ["operation"], registry=r)
        # --- accounting ---
        self.cost_usd = Counter("gateway_cost_usd", "Cost of calls in USD (summed from integer micro-USD)",
                                ["alias", "deployment"], registry=r)
        self.cache_saved_usd = Counter("gateway_cache_saved_usd", "Cost avoided by answers from the cache, USD",
                                       ["alias"], registry=r)
        self.unpriced_calls = Counter("gateway_unpriced_calls", "Calls whose cost is unknown (no price for the "
                                      "deployment)", ["alias", "deployment"], registry=r)
        self.estimated_usage = Counter("gateway_estimated_usage_calls", "Calls whose usage the gateway counted "
                                       "itself (the provider reported none: cut, cancelled)", ["alias"], registry=r)
        self.budget_rejections = Counter("gateway_budget_rejections", "Calls refused because a budget is spent",
                                         ["scope"], registry=r)
        self.accounting_lost = Counter("gateway_accounting_records_lost", "Usage records dropped after the "
                                       "store failed and the retry queue was full (each is logged)", registry=r)
        self.accounting_retry_queue = Gauge("gateway_accounting_retry_queue", "Calls whose accounting writes "
                                            "wait for a retry after a store failure", registry=r,
                                            multiprocess_mode="livesum")
        # --- end accounting ---
        # --- rate limits ---
        self.ratelimit_rejections = Counter("gateway_ratelimit_rejections", "Requests refused by a rate limit",
                                            ["scope", "limit"], registry=r)
        self.ratelimit_store_failures = Counter("gateway_ratelimit_store_failures",
                                                "Limiter/key store calls that failed, by operation and policy",
                                                ["operation", "policy"], registry=r)
        # --- end rate limits ---
        # --- cache ---
        self.cache_lookups = Counter("gateway_cache_lookups", "Cache lookups by alias and result "
                                     "(hit, miss, bypass, error)", ["alias", "result"], registry=r)
        self.cache_stores = Counter("gateway_cache_stores", "Answers written to the cache, or skipped "
                                    "(too_large, not_cacheable, no_store)", ["alias", "result"], registry=r)
        self.cache_bytes = Counter("gateway_cache_bytes", "Cache entry bytes written and served",
                                   ["alias", "direction"], registry=r)
        # --- end cache ---
        # --- routing ---
        self.fallbacks = Counter("gateway_routing_fallbacks", "Requests moved to another alias, by reason",
                                 ["alias", "to_alias", "reason"], registry=r)
        self.retries = Counter("gateway_routing_retries", "Attempts after the first, by alias",
                               ["alias"], registry=r)
        self.hedges = Counter("gateway_routing_hedges", "Hedged second attempts, by outcome (started, won)",
                              ["alias", "outcome"], registry=r)
        self.circuit_state = Gauge("gateway_routing_circuit_state",
                                   "Deployment circuit breaker: 0 closed, 1 half-open, 2 open",
                                   ["deployment"], registry=r, multiprocess_mode="livemax")
        self._circuit_codes: dict[str, int] = {}
        # --- end routing ---
        # --- upstream pool ---
        self.pool_wait_seconds = Histogram("gateway_upstream_pool_wait_seconds", "Time requests waited for a free "
                                           "upstream connection, when the provider's pool was full (pool_size)",
                                           ["provider"], buckets=LATENCY_BUCKETS, registry=r)
        self.pool_exhausted = Counter("gateway_upstream_pool_exhausted", "Requests that found the provider's "
                                      "connection pool full and waited", ["provider"], registry=r)
        # --- end upstream pool ---
        # --- observability ---
        self.upstream_seconds = Histogram("gateway_upstream_duration_seconds", "Time spent waiting on "
                                          "upstreams per request (all attempts; a stream until its end)",
                                          ["alias", "deployment"], buckets=LATENCY_BUCKETS, registry=r)
        self.inter_token_seconds = Histogram("gateway_inter_token_latency_seconds", "Mean gap between "
                                             "streamed completion tokens, per stream", ["alias", "deployment"],
                                             buckets=INTER_TOKEN_BUCKETS, registry=r)
        self.deployment_in_flight = Gauge("gateway_deployment_in_flight", "Upstream attempts in flight",
                                          ["deployment"], registry=r, multiprocess_mode="livesum")
        self.store_seconds = Histogram("gateway_store_duration_seconds", "Store round trips by operation",
                                       ["operation"], buckets=STORE_BUCKETS, registry=r)
        self.team_cost_usd = Counter("gateway_team_cost_usd", "Cost of calls in USD by team (and key name "
                                     "when metrics.key_labels is on; else key is empty)", ["team", "key"], registry=r)
        self.team_tokens = Counter("gateway_team_tokens", "Tokens by team (and key name when "
                                   "metrics.key_labels is on) and direction", ["team", "key", "direction"],
                                   registry=r)
        self.budget_used_ratio = Gauge("gateway_budget_used_ratio", "Share of a budget used in its current "
                                       "period (key budgets carry the key name only with metrics.key_labels)",
                                       ["scope", "name", "period"], registry=r, multiprocess_mode="livemax")
        self.budget_limit_usd = Gauge("gateway_budget_limit_usd", "A budget's limit in USD",
                                      ["scope", "name", "period"], registry=r, multiprocess_mode="livemax")
        self.config_reload_timestamp = Gauge("gateway_config_last_reload_timestamp_seconds", "When the "
                                             "running config was loaded (Unix time)", registry=r,
                                             multiprocess_mode="max")
        self.deployment_info = Gauge("gateway_deployment_info", "1 for each deployment an alias of the running "
                                     "config routes to (joins circuit state to aliases)",
                                     ["alias", "deployment", "provider"], registry=r, multiprocess_mode="livemax")
        self._deployments: set[tuple[str, str, str]] = set()
        # --- edge ---
        self.connections_refused = Counter("gateway_connections_refused", "Client connections the server "
                                           "refused or cut, by reason (max_connections, headers_too_large, "
                                           "header_timeout, body_timeout, bad_request)", ["reason"], registry=r)
        self.auth_failures = Counter("gateway_auth_failures", "Failed authentications, and requests refused "
                                     "because their address failed too often (outcome: failed, throttled)",
                                     ["outcome"], registry=r)
        # --- end edge ---
        # Series that exist from the start (0), so rates and alerts see them before the first event.
        for operation in ("settle", "budget", "cache", "routing_read", "budget_read"):
            self.store_errors.labels(operation)
        for reason in REFUSAL_REASONS:
            self.connections_refused.labels(reason)
        for outcome in ("failed", "throttled"):
            self.auth_failures.labels(outcome)
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        self.key_labels = False  # metrics.key_labels: the config opts in to key names as label values
        self._principal_labels: dict[tuple[str, str | None], tuple[str, str]] = {}
        # --- end observability ---

    def child(self, metric: Any, *labels: str) -> Any:
        """The series of `metric` with these label values, to update on the request path: its tally
        (see the module's docstring), or in multiprocess mode the prometheus_client child (cached:
        labels() takes a lock and validates on every call). A metric without labels takes none."""
        key = (metric, *labels)
        found = self._tallies.get(key)
        if found is None:
            series = metric.labels(*labels) if labels else metric
            found = self._tallies[key] = _TALLIES[metric._type](series) if self._tallied else series
        return found

    def fold(self) -> None:
        """Every tally's updates into its prometheus_client child (a registry read does this first)."""
        if self._tallied:
            for tally in list(self._tallies.values()):
                tally.fold()

    def count_request(self, alias: str, provider: str, deployment: str, status: int, dialect: str = "") -> None:
        status_class = _STATUS_CLASS[status // 100] if 1 <= status // 100 <= 5 else "other"
        key = (self.requests, alias, provider, deployment, status_class)
        found = self._tallies.get(key)
        if found is None:
            found = self.child(*key)
        found.inc()
        if dialect:
            by_dialect = self._tallies.get((self.dialect_requests, dialect, status_class))
            if by_dialect is None:
                by_dialect = self.child(self.dialect_requests, dialect, status_class)
            by_dialect.inc()

    def set_circuit(self, deployment: str, code: int) -> None:  # --- routing ---
        if self._circuit_codes.get(deployment) != code:  # set on every attempt, changed on few
            self._circuit_codes[deployment] = code
            self.child(self.circuit_state, deployment).set(code)

    # --- observability ---
    def principal_labels(self, name: str, team: str | None) -> tuple[str, str]:
        """(team, key) label values for a caller: the key name only when the config opted in."""
        found = self._principal_labels.get((name, team))
        if found is None:
            if len(self._principal_labels) > 10_000:  # runtime keys come and go: stay bounded
                self._principal_labels.clear()
            found = self._principal_labels[(name, team)] = (team or "", name if self.key_labels else "")
        return found

    def forget(self, gauge: Gauge, *labels: str) -> None:
        """Drop a gauge's series. In multiprocess mode prometheus_client cannot remove one (the other
        workers' files keep it): it is set to 0, which the dashboards read as "gone"."""
        self._tallies.pop((gauge, *labels), None)
        if multiprocess_mode():
            gauge.labels(*labels).set(0)
            return
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)

    def set_deployments(self, rows: set[tuple[str, str, str]]) -> None:
        """The running config's (alias, deployment, provider) rows; a deployment's circuit starts closed."""
        for row in self._deployments - rows:
            self.forget(self.deployment_info, *row)
        for row in rows - self._deployments:
            self.deployment_info.labels(*row).set(1)
            if row[1] not in self._circuit_codes:
                self.set_circuit(row[1], 0)
        self._deployments = set(rows)

    def set_key_labels(self, enabled: bool) -> None:
        if enabled != self.key_labels:
            self.key_labels = enabled
            self._principal_labels.clear()

    def exposition(self) -> bytes:
        path = os.environ.get(MULTIPROC_ENV)
        if path:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_process_dead(pid: int) -> None:
    """A worker's live gauges leave the merged view when it exits."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    # --- end observability ---


_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
