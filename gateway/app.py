"""The composition root: the only module that builds concrete objects (store, upstream pool,
providers, pipeline) and wires them into the Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.accounting.prices import PriceError, load_prices
from gateway.accounting.retry import RetryQueue
from gateway.accounting.stage import build_stage
from gateway.auth import Authenticator, FailureThrottle
from gateway.cache.stage import CacheStage
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.conversations import Conversations
from gateway.conversations.stage import ConversationStage
from gateway.dialects import MessagesDialect
from gateway.dialects.chat import ChatDialect
from gateway.dialects.responses.dialect import ResponsesDialect
from gateway.endpoints.admin import CachePurgeEndpoint, KeysEndpoint, ReloadEndpoint, SpendEndpoint
from gateway.endpoints.calls import DialectEndpoint
from gateway.endpoints.messages import CountTokensEndpoint
from gateway.endpoints.models import ModelsEndpoint
from gateway.endpoints.ops import HealthEndpoint, MetricsEndpoint, ReadyEndpoint
from gateway.endpoints.responses import InputTokensEndpoint, StoredResponseEndpoint
from gateway.errors import NotFoundError
from gateway.logs import apply_level, get_logger
from gateway.metrics import Metrics, mark_process_dead
from gateway.middleware.cors import Cors
from gateway.middleware.edge import EdgeMiddleware
from gateway.ops.access_log import AccessLog
from gateway.ops.monitor import Monitor
from gateway.ops.watch import FileWatcher
from gateway.pipeline import Pipeline, Stage
from gateway.providers.redact import build_redactor
from gateway.ratelimit import KeyRegistry, RateLimiter, RateLimitStage
from gateway.routing.router import Router
from gateway.routing.stage import RoutingStage
from gateway.routing.stats import RoutingStats
from gateway.routing.table import RouteTable
from gateway.runtime import ReloadOutcome, Runtime, Services
from gateway.schemas import Operation
from gateway.stages.shedding import SheddingStage
from gateway.stages.shutdown import drain
from gateway.store import build_store
from gateway.store.topology import describe as describe_store
from gateway.tokens import TokenCounter
from gateway.upstream import UpstreamPool

log = get_logger("app")


def build_runtime(config: GatewayConfig, services: Services) -> Runtime:
    assert services.store is not None, "the store is built before any config is applied"
    # --- rate limits --- (first: a refused request touches nothing else)
    keys = services.keys
    auth = Authenticator(config.auth, keys.lookup if keys is not None else None)
    limiter = RateLimiter(config, services.store, services.tokens, services.metrics)
    deployment_limits = any(d.limits for spec in config.models.values() for d in spec.deployments)
    gate = limiter if deployment_limits else None
    # The Responses API's stored conversations first: a continued turn's history counts in its limits.
    responses = config.responses
    conversations = Conversations(services.store, ttl=responses.ttl, max_response_bytes=responses.max_response_bytes,
                                  max_chain=responses.max_chain, max_history_bytes=responses.max_history_bytes)
    # Shedding first: a refused call costs nothing more (and without a bound, no call needs it).
    shedding = SheddingStage(config, services.in_flight, services.metrics)
    stages: list[Stage] = [shedding] if shedding.bounded else []
    stages += [ConversationStage(conversations), RateLimitStage(limiter)]
    # --- end rate limits ---
    # --- accounting --- (before the cache: it reserves budgets, and sees a cache hit)
    retry = services.retry
    if retry is None:
        retry = services.retry = RetryQueue(config.accounting.retry_queue, services.metrics, services.store)
    retry.bound, retry.interval = config.accounting.retry_queue, config.accounting.retry_interval
    try:
        prices = load_prices(config.accounting.prices_file)
    except PriceError as exc:
        raise ConfigError([f"accounting.prices_file: {line}" for line in str(exc).splitlines()]) from None
    accounting = build_stage(config, prices, store=services.store,
                             tokens=services.tokens, metrics=services.metrics, retry=retry)
    stages.append(accounting)
    # The cost strategy ranks by the same prices accounting bills with (pico-USD per token → USD/Mtok).
    table = RouteTable(config, costs={dep: (p.input + p.output) / 2e6 if p is not None else None
                                      for dep, p in accounting.prices.items()})
    # --- end accounting ---
    # --- cache --- (limits and budgets admit first, a hit answers without routing)
    cache = CacheStage(services.store, services.metrics, config,
                       clock=services.hooks.cache_clock)
    if cache.policies:
        stages.append(cache)
    # --- end cache ---
    # --- routing ---
    stats = routing_stats(services)
    router = Router(table, services.pool, stats=stats, metrics=services.metrics, gate=gate,
                    redactor=build_redactor(config))
    stages.append(RoutingStage(table, stats, services.store))  # last: runs only when no other stage answered
    # --- end routing ---
    pipeline = Pipeline(auth, router, services.metrics, services.store, tuple(stages),
                        stream_usage_hook=accounting.annotate_stream)
    return Runtime(config=config, digest=config.digest(), auth=auth, table=table, pipeline=pipeline,
                   conversations=conversations)


def report_estimates(tokens: TokenCounter, config: GatewayConfig) -> None:
    """One line naming the aliases whose token counts (limits, budget reservations, usage a provider
    did not report) are estimates, and what they are counted with."""
    estimating: dict[str, list[str]] = {}
    for alias, spec in config.models.items():
        models = tokens.estimating([alias, *(d.model for d in spec.deployments)])
        if models:
            estimating.setdefault(tokens.how(models[0]), []).append(alias)
    for counted_with, aliases in estimating.items():
        log.info("token counts of these aliases are estimates: their encoding is not shipped",
                 extra={"fields": {"aliases": ", ".join(aliases), "counted_with": counted_with}})


def routing_stats(services: Services) -> RoutingStats:  # --- routing ---
    """The process-wide routing statistics (they outlive config reloads). Tests may replace their
    clock, random source and sleep in `services.hooks` before the app starts."""
    stats = services.routing_stats
    if stats is None:
        hooks = services.hooks
        stats = services.routing_stats = RoutingStats(services.store, metrics=services.metrics,
                                                      clock=hooks.routing_clock, rng=hooks.routing_rng,
                                                      sleep=hooks.routing_sleep)
    return stats


async def apply_config(services: Services, config: GatewayConfig) -> Runtime:
    """Build everything a config implies and swap it in atomically; requests in flight keep the
    runtime they started with."""
    runtime = build_runtime(config, services)
    await services.pool.update(runtime.table.provider_map)
    previous = services.runtime
    services.runtime = runtime
    services.max_body_bytes = config.server.max_body_bytes
    if previous is not None and previous.digest != runtime.digest:
        services.metrics.forget(services.metrics.config_info, previous.digest)
    services.metrics.config_info.labels(runtime.digest).set(1)
    # --- observability ---
    services.metrics.config_reload_timestamp.set(time.time())
    services.metrics.set_key_labels(config.metrics.key_labels)
    services.metrics.set_deployments({(alias, d.id, d.provider) for alias, spec in config.models.items()
                                      for d in spec.deployments})
    # --- end observability ---
    # --- edge: the access log, the auth throttle, CORS ---
    if services.configure_edge is not None:
        services.configure_edge(config)
    # --- observability ---
    apply_level(config.logging.level)
    # --- end observability ---
    if not config.auth.required:
        log.warning("auth.required is false: every caller is accepted without a key (demo mode)")
    return runtime


async def reload_from_file(services: Services) -> ReloadOutcome:
    """Reread the config file. A broken file keeps the running config and reports every problem.
    Reloads (file watcher, SIGHUP, admin API) run one at a time."""
    reloads = services.reloads  # --- observability ---
    async with reloads.lock:
        watcher = reloads.watcher
        if watcher is not None:
            watcher.snapshot()  # what is read now is what the watcher saw: no second reload for it
        outcome = await _reload(services)
        if watcher is not None:
            watcher.track_new()  # nor for a file the new config names
        return outcome


async def _reload(services: Services) -> ReloadOutcome:
    current = services.current()
    if services.config_path is None:
        return False, ["the gateway was started without a config file"], current.digest
    try:
        # An empty file is the embedded defaults at start-up, but as a reload it would drop every model
        # and the master key: most likely a file caught mid-write, or a mistake.
        config = load_config(services.config_path, empty_ok=False)
        runtime = await apply_config(services, config)
    except ConfigError as error:
        services.metrics.child(services.metrics.config_reloads, "failure").inc()
        for problem in error.problems:
            log.error("config reload refused", extra={"fields": {"problem": problem}})
        return False, error.problems, current.digest
    except Exception as exc:  # --- observability: a fault while building still keeps the running config ---
        services.metrics.child(services.metrics.config_reloads, "failure").inc()
        log.exception("config reload failed", extra={"fields": {"error": type(exc).__name__}})
        return False, [f"<config>: the gateway could not apply the config ({type(exc).__name__})"], current.digest
    services.metrics.child(services.metrics.config_reloads, "success").inc()
    log.info("config reloaded", extra={"fields": {"config": runtime.digest}})
    return True, [], runtime.digest


# --- observability: the periodic checks, the config watcher, SIGHUP ---
def start_operations(services: Services) -> tuple[Monitor, FileWatcher | None]:
    assert services.store is not None
    monitor = Monitor(services.store, services.metrics, lambda: services.current().config)
    monitor.start()
    watcher: FileWatcher | None = None
    path = services.config_path
    if path is not None:
        def watched() -> list[str]:
            prices = services.current().config.accounting.prices_file
            return [path, prices] if prices else [path]

        watcher = FileWatcher(watched, lambda: reload_from_file(services),
                              services.current().config.reload.watch_interval)
        services.reloads.watcher = watcher
        watcher.start()
        # The config was read before the watcher first looked at the file: an edit in between (a
        # worker starting while the file changes) would otherwise never be seen. One parse settles it.
        try:
            on_disk = load_config(path).digest()
        except ConfigError:
            on_disk = None
        if on_disk != services.current().digest:
            _schedule_reload(services)
        loop = asyncio.get_running_loop()
        try:  # the main thread only; a test server in a thread has no signal handlers
            loop.add_signal_handler(signal.SIGHUP, lambda: _on_sighup(services))
            services.reloads.sighup = True
        except (ValueError, RuntimeError, NotImplementedError):
            pass
    return monitor, watcher


def _on_sighup(services: Services) -> None:
    log.info("SIGHUP: reloading the config")
    _schedule_reload(services)


def _schedule_reload(services: Services) -> None:
    task = asyncio.get_running_loop().create_task(reload_from_file(services))
    pending = services.reloads.pending
    pending.add(task)
    task.add_done_callback(pending.discard)


async def stop_operations(services: Services, ops: tuple[Monitor, FileWatcher | None]) -> None:
    monitor, watcher = ops
    await monitor.stop()
    if watcher is not None:
        await watcher.stop()
    if services.reloads.sighup:
        services.reloads.sighup = False
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    mark_process_dead(os.getpid())
# --- end observability ---


class GatewayStarlette(Starlette):
    """Starlette without its own ServerErrorMiddleware and ExceptionMiddleware: the gateway's
    EdgeMiddleware (outermost) already turns every failure into an OpenAI-shaped answer, and the two
    extra layers cost a Request object, a closure and two send wrappers on every request."""

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = self.router
        for middleware in reversed(self.user_middleware):
            app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        return app


class NotFoundEndpoint:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotFoundError(f"Unknown path {scope['path']}.", code="unknown_url")


def create_app(config: GatewayConfig, *, config_path: str | None = None,
               metrics: Metrics | None = None, tune_process: bool = False) -> Starlette:
    """The app for `config`. `tune_process` (only `gateway serve`, which owns its process) tunes the
    garbage collector once the app has started; an app embedded elsewhere never touches its host."""
    metrics = metrics or Metrics()
    estimated = metrics.estimated_tokens
    services = Services(metrics=metrics, pool=UpstreamPool(metrics), config_path=config_path,
                        tokens=TokenCounter(on_estimate=lambda name: metrics.child(estimated, name).inc()),
                        max_body_bytes=config.server.max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store_cfg = config.store
        services.store = build_store(store_cfg.redis_url, timeout=store_cfg.timeout, key_prefix=store_cfg.key_prefix,
                                     cluster=store_cfg.cluster,  # deploy: topology
                                     replica_acks=store_cfg.replica_acks, cache_max_bytes=store_cfg.cache_max_bytes)
        if store_cfg.redis_url:  # deploy: which Redis, never its credentials
            where = describe_store(store_cfg.redis_url, cluster=store_cfg.cluster)
            log.info("shared store", extra={"fields": {"redis": where}})
        # --- rate limits: runtime keys, refreshed from the store in the background ---
        keys = KeyRegistry(services.store, metrics, config.limits_defaults.key_refresh)
        services.keys = keys
        with contextlib.suppress(Exception):  # the store may be down at start: the refresher retries
            await keys.refresh()
        keys.start()
        await apply_config(services, config)
        # Tokenizer files load off the event loop; until then (or without them) counts are estimates.
        await asyncio.to_thread(services.tokens.preload)
        report_estimates(services.tokens, config)
        if tune_process:
            tune_collector()
        ops = start_operations(services)  # --- observability ---
        services.started = True
        try:
            yield
        finally:
            await stop_operations(services, ops)  # --- observability ---
            # --- deploy: graceful shutdown (uvicorn has drained connections up to server.shutdown_grace) ---
            await drain(services)
            # --- end deploy ---
            await keys.stop()
            await services.pool.close()
            await services.store.close()

    def openai(operation: Operation) -> DialectEndpoint:
        return DialectEndpoint(ChatDialect(operation), services)

    models = ModelsEndpoint(services)
    routes = []
    # The OpenAI SDK is sometimes configured without the /v1 prefix: serve both.
    for prefix in ("/v1", ""):
        routes += [
            Route(f"{prefix}/chat/completions", openai(Operation.CHAT)),
            Route(f"{prefix}/completions", openai(Operation.COMPLETIONS)),
            Route(f"{prefix}/embeddings", openai(Operation.EMBEDDINGS)),
            Route(f"{prefix}/models", models),
            Route(prefix + "/models/{model:path}", models),
        ]
    # The OpenAI Responses API (Codex, the Agents SDK, `client.responses`) and its stored responses.
    routes += [
        Route("/v1/responses", DialectEndpoint(ResponsesDialect(), services)),
        Route("/v1/responses/input_tokens", InputTokensEndpoint(services)),
        Route("/v1/responses/{response_id}", StoredResponseEndpoint(services)),
        Route("/v1/responses/{response_id}/input_items", StoredResponseEndpoint(services, items=True)),
    ]
    # Anthropic's SDKs and Claude Code: the Messages API.
    routes += [
        Route("/v1/messages", DialectEndpoint(MessagesDialect(), services)),
        Route("/v1/messages/count_tokens", CountTokensEndpoint(services)),
    ]
    routes += [
        # Claude Code checks that its base URL answers (HEAD /) before its first call.
        Route("/", HealthEndpoint(), methods=["GET", "HEAD"]),
        Route("/healthz", HealthEndpoint()),
        Route("/readyz", ReadyEndpoint(services)),
        Route("/metrics", MetricsEndpoint(services)),
        Route("/admin/config/reload", ReloadEndpoint(services, lambda: reload_from_file(services))),
        Route("/admin/spend", SpendEndpoint(services, "spend")),  # accounting
        Route("/admin/budgets", SpendEndpoint(services, "budgets")),  # accounting
        Route("/admin/usage", SpendEndpoint(services, "usage")),  # accounting
        Route("/admin/cache/purge", CachePurgeEndpoint(services)),  # --- cache ---
        Route("/admin/keys", KeysEndpoint(services)),
        Route("/admin/keys/{key_id}", KeysEndpoint(services)),
        Route("/{path:path}", NotFoundEndpoint()),
    ]
    # The OpenAI endpoints skip the route list: one dict lookup in the edge layer finds them.
    direct_paths = {route.path: route.app for route in routes
                    if isinstance(route, Route) and isinstance(route.app, DialectEndpoint)}
    # Azure OpenAI clients: /openai/deployments/{deployment}/<end>, the deployment being the alias.
    azure_paths = {f"/{end}": DialectEndpoint(ChatDialect(operation), services, alias_from_path=True)
                   for end, operation in (("chat/completions", Operation.CHAT), ("completions", Operation.COMPLETIONS),
                                          ("embeddings", Operation.EMBEDDINGS))}
    access_log = AccessLog(config.logging.access_log, config.logging.log_prompts)
    throttle = FailureThrottle(config.auth.throttle)
    cors = Cors(config.server.cors)

    def configure_edge(applied: GatewayConfig) -> None:
        access_log.enabled, access_log.log_prompts = applied.logging.access_log, applied.logging.log_prompts
        throttle.configure(applied.auth.throttle)
        cors.configure(applied.server.cors)

    services.configure_edge = configure_edge
    # Endpoints whose clients speak another dialect than OpenAI's render their errors in it.
    renderers = {route.path: route.app.render_error for route in routes if isinstance(route, Route) and (
        isinstance(route.app, CountTokensEndpoint)
        or (isinstance(route.app, DialectEndpoint) and route.app.dialect.name != "chat"))}
    app = GatewayStarlette(routes=routes, lifespan=lifespan,
                           middleware=[Middleware(EdgeMiddleware, direct_paths=direct_paths, access_log=access_log,
                                                  metrics=metrics, azure_paths=azure_paths, throttle=throttle,
                                                  cors=cors, renderers=renderers)])
    # A request target that is no path at all (`OPTIONS *`, `GET *`) matches no route either.
    app.router.default = NotFoundEndpoint()
    app.state.services = services
    return app


def tune_collector() -> None:
    """Garbage-collector settings for a process that only serves the gateway."""
    # Everything built so far lives for the whole process: move it out of the collector's sight
    # so the periodic full collections no longer walk it (a pause of tens of ms under load).
    gc.collect()
    gc.freeze()
    # A request allocates a few hundred containers, almost none of which outlive it (no cycles):
    # at the default threshold (700) the young generation was collected every few requests.
    gc.set_threshold(20_000, 20, 20)


def create_app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` and multi-worker serving: the config path comes from
    GATEWAY_CONFIG."""
    from gateway.config import default_config_path
    from gateway.logs import setup_logging

    # Worker processes start fresh: logging is set up again from what `gateway serve` passed down
    # (a level given on the command line or in the environment wins over the config's).
    path = default_config_path()
    config = load_config(path)
    level = os.environ.get("GATEWAY_LOG_LEVEL")
    setup_logging(level or config.logging.level, os.environ.get("GATEWAY_LOG_FORMAT") or config.logging.format,
                  pinned=bool(level))
    return create_app(config, config_path=path, tune_process=True)  # (only `gateway serve` uses this factory)
