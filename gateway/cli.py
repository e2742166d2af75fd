"""`gateway serve` and `gateway config check`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from gateway.config import ConfigError, GatewayConfig, default_config_path, load_config


def _print_problems(lead: str, problems: Sequence[str], *, what: str = "", field: str = "") -> None:
    """`lead: N problem(s)what` on stderr, then each problem on a line of its own (after `field`)."""
    print(f"{lead}: {_count(len(problems), 'problem')}{what}", file=sys.stderr)
    for problem in problems:
        print(f"  {field}{problem}", file=sys.stderr)


def _check(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as error:
        _print_problems(path, error.problems)
        return 1
    from gateway.accounting.prices import PriceError, load_prices, unpriced_budget_problem

    try:
        prices = load_prices(config.accounting.prices_file)
    except PriceError as error:
        _print_problems(path, str(error).splitlines(), what=" in the price table", field="accounting.prices_file: ")
        return 1
    problem = unpriced_budget_problem(config)
    if problem:
        _print_problems(path, [problem])
        return 1
    print(f"{path}: ok ({_count(len(config.providers), 'provider')}, {_count(len(config.models), 'model alias')}, "
          f"{_count(len(config.auth.keys), 'key')}, {_count(sum(len(m) for m in prices.values()), 'price')}, "
          f"config {config.digest()})")
    for pattern, alias in config.model_patterns.items():
        print(f"  model names matching {pattern} go to {alias}")
    return 0


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{n} {noun if n == 1 else plural}"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.logs import setup_logging
    from gateway.server import LOOPS, GatewayHttpProtocol

    path = args.config
    try:
        config = load_config(path)
    except ConfigError as error:
        _print_problems(f"{path}: the gateway cannot start", error.problems)
        return 2
    level = args.log_level or os.environ.get("GATEWAY_LOG_LEVEL")
    fmt = args.log_format or os.environ.get("GATEWAY_LOG_FORMAT")
    setup_logging(level or config.logging.level, fmt or config.logging.format, pinned=bool(level))
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    workers = args.workers or config.server.workers
    options = dict(host=host, port=port, loop=LOOPS[args.loop or config.server.loop], http=GatewayHttpProtocol,
                   access_log=False, log_level="warning", lifespan="on",
                   timeout_graceful_shutdown=config.server.shutdown_grace, server_header=False, date_header=False,
                   # No X-Forwarded-* rewriting: the gateway logs no client address, and it is one
                   # layer less per request. Put a load balancer's access log where addresses matter.
                   proxy_headers=False)
    if workers > 1:
        os.environ["GATEWAY_CONFIG"] = os.path.abspath(path)
        if level:
            os.environ["GATEWAY_LOG_LEVEL"] = level
        if fmt:
            os.environ["GATEWAY_LOG_FORMAT"] = fmt
        metrics_dir = _multiprocess_metrics_dir()  # --- observability ---
        # uvicorn's supervisor binds the port (exiting at once when it is taken) and starts the workers.
        _announce("gateway starting workers", config, path, host, port, workers)
        try:
            uvicorn.run("gateway.app:create_app_from_env", factory=True, workers=workers, **options)  # type: ignore[arg-type]
        finally:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        _announce("gateway stopped", config, path, host, port, workers)
    else:
        from gateway.server import AnnouncingServer, listen

        try:
            sock = listen(host, port)
        except OSError as exc:
            print(f"{path}: the gateway cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        from gateway.app import create_app

        server = AnnouncingServer(uvicorn.Config(create_app(config, config_path=path, tune_process=True), **options),  # type: ignore[arg-type]
                                  on_listening=lambda: _announce("gateway listening", config, path, host, port),
                                  on_stopped=lambda: _announce("gateway stopped", config, path, host, port))
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
        if not server.started:
            return 1
    return 0


def _announce(message: str, config: GatewayConfig, path: str, host: str, port: int, workers: int = 1) -> None:
    """What a starting or stopping gateway is: one line an operator can read without the config."""
    from gateway.logs import get_logger
    from gateway.store.topology import describe

    store = describe(config.store.redis_url, cluster=config.store.cluster) if config.store.redis_url else "embedded"
    keys = len(config.auth.keys)
    auth = f"keys required ({_count(keys, 'key')} in the config)" if config.auth.required else "demo: no key needed"
    where = f"[{host}]" if ":" in host else host
    get_logger("server").info(message, extra={"fields": {
        "address": f"http://{where}:{port}", "config": os.path.abspath(path), "config_hash": config.digest(),
        "aliases": len(config.models), "store": store, "auth": auth,
        "admin_api": "master key set" if config.auth.master_key and config.auth.master_key.get_secret_value()
        else "closed (no master key)", "workers": workers}})


# --- observability ---
def _multiprocess_metrics_dir() -> str | None:
    """Prometheus multiprocess mode for `--workers N`: every worker writes its metric values to files
    in PROMETHEUS_MULTIPROC_DIR and /metrics merges them. A directory the operator chose is emptied
    (values of an earlier run would be merged in); otherwise a fresh temporary one is made, and
    removed again at exit (the returned path)."""
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        os.makedirs(chosen, exist_ok=True)
        for name in os.listdir(chosen):
            if name.endswith(".db"):
                os.remove(os.path.join(chosen, name))
        return None
    made = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made
# --- end observability ---


# --- accounting ---
def _usage_export(args: argparse.Namespace) -> int:
    from gateway.accounting.export import export
    from gateway.accounting.queries import QueryError, since_ms
    from gateway.errors import StoreUnavailableError

    url, prefix = args.redis_url, args.key_prefix
    if url is None or prefix is None:
        try:
            config = load_config(args.config)
        except ConfigError as error:
            print(f"{args.config}: {len(error.problems)} problem(s)", file=sys.stderr)
            for problem in error.problems:
                print(f"  {problem}", file=sys.stderr)
            return 2
        url = url or config.store.redis_url
        prefix = prefix or config.store.key_prefix
    if not url:
        print("the usage log lives in Redis: the config has no store.redis_url (or pass --redis-url)", file=sys.stderr)
        return 2
    try:
        start = since_ms(args.since)
        end = since_ms(args.until) if args.until else None
    except QueryError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    try:
        if args.output and args.output != "-":
            with open(args.output, "w", encoding="utf-8", newline="") as out:
                count = export(url, prefix, start, end, args.format, out)
        else:
            count = export(url, prefix, start, end, args.format, sys.stdout)
    except StoreUnavailableError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print(f"{count} record(s)", file=sys.stderr)
    return 0
# --- end accounting ---


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="An OpenAI-compatible LLM gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", default=default_config_path(), help="routing YAML (default: %(default)s)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=None)
    serve.add_argument("--loop", choices=("uvloop", "asyncio"), default=None,
                       help="event loop (default: the config's server.loop)")
    serve.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"),
                       help="overrides logging.level (and GATEWAY_LOG_LEVEL)")
    serve.add_argument("--log-format", choices=("json", "text"), default=None,
                       help="overrides logging.format (and GATEWAY_LOG_FORMAT)")
    config = commands.add_parser("config", help="work with config files")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a config file and list every problem")
    check.add_argument("file")
    usage = commands.add_parser("usage", help="the usage log (accounting)")
    usage_commands = usage.add_subparsers(dest="usage_command", required=True)
    exp = usage_commands.add_parser("export", help="write usage-log records from Redis as JSON lines or CSV")
    exp.add_argument("--since", required=True, help="YYYY-MM-DD, ISO timestamp (UTC) or epoch ms")
    exp.add_argument("--until", default=None, help="same forms; default: now")
    exp.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    exp.add_argument("--config", default=default_config_path(), help="routing YAML giving store.redis_url")
    exp.add_argument("--redis-url", default=None, help="overrides the config's store.redis_url")
    exp.add_argument("--key-prefix", default=None, help="overrides the config's store.key_prefix")
    exp.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "config" and args.config_command == "check":
        return _check(args.file)
    if args.command == "usage" and args.usage_command == "export":
        return _usage_export(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
