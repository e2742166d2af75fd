"""Prometheus metrics: the only prometheus_client importer.

Label values are bounded by the config (aliases, deployments, providers) or by small closed sets
(status class, error type); never keys, users, prompts or request ids. Children are cached per label
tuple so the hot path does a dict lookup, not a label resolution.

The request path updates tallies, not prometheus_client's children: a child takes a mutex and makes
three to six Python calls per update, and a request makes about twenty updates (7-8% of the gateway's
instructions per request, measured with bench/instructions.sh). A tally adds to plain attributes, and
`TallyCollector` (the registry's one collector for these metrics) adds each tally to its child's
samples whenever the registry is read (the /metrics endpoint, `registry.get_sample_value`), so a
scrape shows every update made before it. Tallies belong to the event loop's thread, which is where
/metrics reads them. With several workers (prometheus multiprocess mode) another process reads this
one's files at any time, so updates go straight to the children there.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

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


class CounterTally:
    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:  # as prometheus_client's Counter: here, not later in a scrape
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.total += amount

    def add_to(self, samples: list[Sample]) -> list[Sample]:
        return [s._replace(value=s.value + self.total) if s.name.endswith("_total") else s for s in samples]


class GaugeTally:
    """`set` goes to the child at once, and the tally starts again from it."""

    __slots__ = ("change", "child")

    def __init__(self, child: Gauge) -> None:
        self.child = child
        self.change = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.change += amount

    def dec(self, amount: float = 1.0) -> None:
        self.change -= amount

    def set(self, value: float) -> None:
        self.change = 0.0
        self.child.set(value)

    def add_to(self, samples: list[Sample]) -> list[Sample]:
        return [s._replace(value=s.value + self.change) for s in samples]


class HistogramTally:
    """Observations per bucket (the bounds end with +Inf: every value has one) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is >= amount, as Histogram.observe picks it.
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount

    def add_to(self, samples: list[Sample]) -> list[Sample]:
        merged, bucket, below = [], 0, 0
        for s in samples:  # a child's buckets come in the order of their bounds, cumulative
            if s.name.endswith("_bucket"):
                below += self.counts[bucket]
                bucket += 1
                s = s._replace(value=s.value + below)
            elif s.name.endswith("_count"):
                s = s._replace(value=s.value + sum(self.counts))
            elif s.name.endswith("_sum"):
                s = s._replace(value=s.value + self.sum)
            merged.append(s)
        return merged


Tally = CounterTally | GaugeTally | HistogramTally


def _bounds(histogram: Histogram, labels: tuple[str, ...]) -> tuple[float, ...]:
    """A histogram child's bucket bounds, read from what it exports."""
    return tuple(float(s.labels["le"]) for family in histogram.collect() for s in family.samples
                 if s.name.endswith("_bucket") and _series(s) == labels)


def _series(sample: Sample) -> tuple[str, ...]:
    """A sample's label values (a histogram bucket's `le` aside), in the order the metric names them."""
    return tuple(value for name, value in sample.labels.items() if name != "le")


class TallyCollector(Collector):
    """Every metric's samples, each series with its tally added (see the module's docstring)."""

    def __init__(self, metrics: Metrics, exported: list[MetricWrapperBase]) -> None:
        self.metrics = metrics
        self.exported = exported

    def describe(self) -> Iterator[Metric]:
        for metric in self.exported:
            yield from metric.describe()

    def collect(self) -> Iterator[Metric]:
        tallies = self.metrics.updaters
        for metric in self.exported:
            for family in metric.collect():
                series: dict[tuple[str, ...], list[Sample]] = {}
                for sample in family.samples:
                    series.setdefault(_series(sample), []).append(sample)
                family.samples = []
                for labels, samples in series.items():
                    tally = tallies.get((metric, *labels))
                    family.samples += samples if tally is None else tally.add_to(samples)
                yield family


class SeriesGroup(ABC):
    """Series a call updates, each looked up through `Metrics.child` the first time a call uses it
    (which creates it, as before) and then kept in its slot: a call reaches all of a group's series
    with the one lookup that found the group, where `child` builds and hashes a label tuple per
    series. `__getattr__` runs only for a slot not filled yet; `_where` names its metric and labels."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    @abstractmethod
    def _where(self, name: str) -> tuple[Any, ...] | None:
        """The metric and labels of the series in slot `name`; None: no such slot."""

    def __getattr__(self, name: str) -> Any:
        where = self._where(name)
        if where is None:
            raise AttributeError(name)
        series = self._metrics.child(*where)
        setattr(self, name, series)
        return series


class CallSeries(SeriesGroup):
    """The series of a finished call of one alias, deployment and stream flag (Metrics.call_series)."""

    __slots__ = ("_alias", "_deployment", "_stream", "completion_tokens", "cost", "duration", "inter_token",
                 "overhead", "prompt_tokens", "ttft", "unpriced", "upstream")

    duration: Any  # gateway_request_duration_seconds
    overhead: Any  # gateway_overhead_seconds
    ttft: Any  # gateway_time_to_first_token_seconds
    prompt_tokens: Any  # gateway_tokens, direction prompt
    completion_tokens: Any  # gateway_tokens, direction completion
    upstream: Any  # gateway_upstream_duration_seconds
    inter_token: Any  # gateway_inter_token_latency_seconds
    cost: Any  # gateway_cost_usd
    unpriced: Any  # gateway_unpriced_calls

    def __init__(self, metrics: Metrics, alias: str, deployment: str, stream: bool) -> None:
        super().__init__(metrics)
        self._alias = alias
        self._deployment = deployment
        self._stream = stream

    def _where(self, name: str) -> tuple[Any, ...] | None:
        m, alias, deployment = self._metrics, self._alias, self._deployment
        return {
            "duration": (m.request_seconds, alias, "true" if self._stream else "false"),
            "overhead": (m.overhead_seconds, alias),
            "ttft": (m.ttft_seconds, alias, deployment),
            "prompt_tokens": (m.tokens, alias, deployment, "prompt"),
            "completion_tokens": (m.tokens, alias, deployment, "completion"),
            "upstream": (m.upstream_seconds, alias, deployment),
            "inter_token": (m.inter_token_seconds, alias, deployment),
            "cost": (m.cost_usd, alias, deployment),
            "unpriced": (m.unpriced_calls, alias, deployment),
        }.get(name)


class TeamSeries(SeriesGroup):
    """The series of a caller's team (and key name, when metrics.key_labels is on): Metrics.team_series."""

    __slots__ = ("_key", "_team", "completion_tokens", "cost", "prompt_tokens")

    prompt_tokens: Any  # gateway_team_tokens, direction prompt
    completion_tokens: Any  # gateway_team_tokens, direction completion
    cost: Any  # gateway_team_cost_usd

    def __init__(self, metrics: Metrics, team: str, key: str) -> None:
        super().__init__(metrics)
        self._team = team
        self._key = key

    def _where(self, name: str) -> tuple[Any, ...] | None:
        m, team, key = self._metrics, self._team, self._key
        return {
            "prompt_tokens": (m.team_tokens, team, key, "prompt"),
            "completion_tokens": (m.team_tokens, team, key, "completion"),
            "cost": (m.team_cost_usd, team, key),
        }.get(name)


# Why the server refused or cut a client connection (gateway_connections_refused_total's `reason`).
REFUSAL_REASONS = ("max_connections", "headers_too_large", "header_timeout", "body_timeout", "bad_request")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # What `child` gives the request path, per (metric, *label values): tallies, or with several
        # workers the prometheus_client children.
        self.updaters: dict[tuple[object, ...], Any] = {}
        self._call_series: dict[tuple[str, str, bool], CallSeries] = {}
        # Several workers: another process reads this one's files whenever it is scraped (see above).
        self._tallied = not multiprocess_mode()
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
        self.shed = Counter("gateway_requests_shed", "Calls refused at once with 503 because the worker or "
                            "the alias was at its bound of calls in flight (max_in_flight), by scope",
                            ["scope", "alias"], registry=r)
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
        self._team_series: dict[tuple[str, str | None], TeamSeries] = {}
        # --- end observability ---
        if self._tallied:
            exported = [m for m in vars(self).values() if isinstance(m, MetricWrapperBase)]
            for metric in exported:
                r.unregister(metric)
            r.register(TallyCollector(self, exported))

    def child(self, metric: Any, *labels: str) -> Any:
        """The series of `metric` with these label values, to update on the request path: its tally
        (see the module's docstring), or in multiprocess mode the prometheus_client child (cached:
        labels() takes a lock and validates on every call). A metric without labels takes none."""
        key = (metric, *labels)
        found = self.updaters.get(key)
        if found is None:
            series = metric.labels(*labels) if labels else metric
            found = self.updaters[key] = self._tally(metric, series, labels) if self._tallied else series
        return found

    def call_series(self, alias: str, deployment: str, stream: bool) -> CallSeries:
        """The series a finished call updates (aliases and deployments come from the config)."""
        key = (alias, deployment, stream)
        found = self._call_series.get(key)
        if found is None:
            found = self._call_series[key] = CallSeries(self, alias, deployment, stream)
        return found

    @staticmethod
    def _tally(metric: Any, series: Any, labels: tuple[str, ...]) -> Tally:
        if isinstance(metric, Histogram):
            return HistogramTally(_bounds(metric, labels))
        return GaugeTally(series) if isinstance(metric, Gauge) else CounterTally()

    def count_request(self, alias: str, provider: str, deployment: str, status: int, dialect: str = "") -> None:
        status_class = _STATUS_CLASS[status // 100] if 1 <= status // 100 <= 5 else "other"
        key = (self.requests, alias, provider, deployment, status_class)
        found = self.updaters.get(key)
        if found is None:
            found = self.child(*key)
        found.inc()
        if dialect:
            by_dialect = self.updaters.get((self.dialect_requests, dialect, status_class))
            if by_dialect is None:
                by_dialect = self.child(self.dialect_requests, dialect, status_class)
            by_dialect.inc()

    def set_circuit(self, deployment: str, code: int) -> None:  # --- routing ---
        if self._circuit_codes.get(deployment) != code:  # set on every attempt, changed on few
            self._circuit_codes[deployment] = code
            self.child(self.circuit_state, deployment).set(code)

    # --- observability ---
    def team_series(self, name: str, team: str | None) -> TeamSeries:
        """A caller's team series, labelled with the key name only when the config opted in."""
        found = self._team_series.get((name, team))
        if found is None:
            if len(self._team_series) > 10_000:  # runtime keys come and go: stay bounded
                self._team_series.clear()
            found = self._team_series[(name, team)] = TeamSeries(self, team or "", name if self.key_labels else "")
        return found

    def forget(self, gauge: Gauge, *labels: str) -> None:
        """Drop a gauge's series. In multiprocess mode prometheus_client cannot remove one (the other
        workers' files keep it): it is set to 0, which the dashboards read as "gone"."""
        self.updaters.pop((gauge, *labels), None)
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
            self._team_series.clear()

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
