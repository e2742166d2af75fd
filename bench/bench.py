"""Helpers for run.sh: write the gateway config, read RSS, and turn wrk's JSON summaries into the
results table and a results file. Standard library + PyYAML only (the gateway's own dependency)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_KEY_NAME = "bench"


def deep_merge(base: Any, extra: Any) -> Any:
    """Mappings merge key by key; anything else in `extra` (lists included) replaces `base`."""
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for key, value in extra.items():
            out[key] = deep_merge(base[key], value) if key in base else value
        return out
    return extra


def write_config(args: argparse.Namespace) -> None:
    import yaml

    mock = f"http://127.0.0.1:{args.mock_port}"
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": args.gateway_port},
        "store": {"redis_url": ""},  # the embedded store
        "auth": {"required": True, "keys": [{"name": BENCH_KEY_NAME, "key": args.key}]},
        "providers": {
            "mock-json": {"type": "openai", "base_url": f"{mock}/json/v1", "api_key": "sk-upstream-bench"},
            "mock-sse": {"type": "openai", "base_url": f"{mock}/sse/v1", "api_key": "sk-upstream-bench"},
            # Same answers in the Anthropic Messages and OpenAI Responses shapes (passthrough scenarios).
            "mock-anthropic-json": {"type": "anthropic", "base_url": f"{mock}/ajson", "api_key": "sk-upstream-bench"},
            "mock-anthropic-sse": {"type": "anthropic", "base_url": f"{mock}/asse", "api_key": "sk-upstream-bench"},
            "mock-responses-json": {"type": "openai", "base_url": f"{mock}/rjson/v1", "api_key": "sk-upstream-bench",
                                    "responses": True},
            "mock-responses-sse": {"type": "openai", "base_url": f"{mock}/rsse/v1", "api_key": "sk-upstream-bench",
                                   "responses": True},
        },
        "models": {
            "bench": {"deployments": [{"provider": "mock-json", "model": "bench-model"}]},
            "bench-stream": {"deployments": [{"provider": "mock-sse", "model": "bench-model"}]},
            "bench-messages": {"deployments": [{"provider": "mock-anthropic-json", "model": "bench-model"}]},
            "bench-messages-stream": {"deployments": [{"provider": "mock-anthropic-sse", "model": "bench-model"}]},
            "bench-responses": {"deployments": [{"provider": "mock-responses-json", "model": "bench-model"}]},
            "bench-responses-stream": {"deployments": [{"provider": "mock-responses-sse", "model": "bench-model"}]},
        },
    }
    if args.extra:
        extra = yaml.safe_load(Path(args.extra).read_text()) or {}
        if not isinstance(extra, dict):
            sys.exit(f"EXTRA_CONFIG {args.extra}: the top level must be a mapping")
        # `bench_key:` in the extra config is merged into the benchmark's own key (team, limits, budget),
        # whose secret is minted per run and so cannot be written in the file.
        key_extra = extra.pop("bench_key", None)
        config = deep_merge(config, extra)
        if isinstance(key_extra, dict):
            config["auth"]["keys"][0].update(key_extra)
    Path(args.out).write_text(yaml.safe_dump(config, sort_keys=False))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.3f}"


def report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    meta = json.loads(Path(args.meta).read_text())
    results: dict[str, Any] = {"meta": meta, "modes": {}}
    failures: list[str] = []
    targets = ("direct", "proxy", "gateway") if meta.get("reference") else ("direct", "gateway")
    kinds = ("throughput",) if meta.get("skip_latency") else ("throughput", "latency")
    for mode in meta["modes"]:
        entry: dict[str, Any] = {}
        for target in targets:
            for kind in kinds:
                data = load(out / f"{mode}-{target}-{kind}.json")
                entry[f"{target}_{kind}"] = data
                if data is None:
                    failures.append(f"{mode} {target} {kind}: no result")
                    continue
                bad = {k: v for k, v in data["errors"].items() if v}
                if bad or data["requests"] == 0:
                    failures.append(f"{mode} {target} {kind}: {data['requests']} requests, errors {bad}")
        summary: dict[str, Any] = {}
        dt = entry.get("direct_throughput")
        dl = entry.get("direct_latency")
        for target in targets[1:]:
            t, lat = entry.get(f"{target}_throughput"), entry.get(f"{target}_latency")
            row: dict[str, Any] = {}
            if dt and t:
                row["rps"] = round(t["rps"], 1)
                row["throughput_ratio"] = round(t["rps"] / dt["rps"], 4) if dt["rps"] else None
            if dl and lat:
                for pct in ("p50", "p99"):
                    row[f"{pct}_ms"] = lat["latency_us"][pct] / 1000
                    row[f"{pct}_added_ms"] = round((lat["latency_us"][pct] - dl["latency_us"][pct]) / 1000, 3)
            summary[target] = row
        ticks = meta.get("cpu_ticks", {}).get(mode)
        gt = entry.get("gateway_throughput")
        if ticks is not None and gt and gt["requests"]:
            cpu_us = ticks * 1e6 / meta.get("clk_tck", 100) / gt["requests"]
            summary["gateway"]["cpu_us_per_request"] = round(cpu_us, 1)
            summary["gateway"]["rps_per_core_from_cpu"] = round(1e6 / cpu_us) if cpu_us else None
        summary["direct"] = {
            "rps": round(dt["rps"], 1) if dt else None,
            "p50_ms": dl["latency_us"]["p50"] / 1000 if dl else None,
            "p99_ms": dl["latency_us"]["p99"] / 1000 if dl else None,
        }
        entry["summary"] = summary
        results["modes"][mode] = entry
    rss = meta.get("rss_kib", {})
    results["rss_kib"] = rss
    samples = load(out / "soak-samples.json")
    soak = None
    if samples:
        runs = [r for r in (load(out / "soak-json.json"), load(out / "soak-stream.json")) if r]
        soak = {
            "seconds": meta.get("soak_seconds"),
            "samples": samples,
            "requests": sum(r["requests"] for r in runs),
            "rps": round(sum(r["rps"] for r in runs), 1),
            "errors": {k: sum(r["errors"][k] for r in runs) for k in ("connect", "read", "write", "status", "timeout")},
        }
        results["soak"] = soak

    c = meta["connections"]
    print()
    print(
        f"llm-gateway benchmark  ({meta['duration']}s per run, gateway on cpu {meta['gateway_cpu']}, "
        f"nginx+wrk on cpu {meta['load_cpu']}, auth on, embedded store)"
    )
    print(
        f"  aliases: {meta['alias']} (non-streaming), {meta['stream_alias']} (streaming)"
        + (f"; extra config: {meta['extra_config']}" if meta.get("extra_config") else "")
    )
    busy = meta.get("busy_before_pct")
    if busy is not None and busy > 10:
        print(
            f"  WARNING: the machine was {busy}% busy before the run (load average {meta.get('loadavg_before')}): "
            "rps and latency are skewed; compare CPU per request instead"
        )
    if meta.get("profile"):
        print("  NOTE: PROFILE=1 - py-spy sampled the gateway during the gateway runs; numbers are lower")
    print(f"  rps at {c} connections; latency in ms at 1 connection; 'added' = minus direct; ratio = rps / direct rps")
    header = f"{'mode':<7} {'target':<8} {'rps':>9} {'ratio':>7}   {'p50':>7} {'added':>7}   {'p99':>7} {'added':>7}"
    print(header)
    print("-" * len(header))

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else fmt.format(v)

    for mode, entry in results["modes"].items():
        s_ = entry["summary"]
        for target in targets:
            row = s_.get(target, {})
            label = {"proxy": "nginx-px"}.get(target, target)
            print(
                f"{mode:<7} {label:<8} {f(row.get('rps'), '{:.0f}'):>9} "
                f"{f(row.get('throughput_ratio'), '{:.3f}'):>7}   "
                f"{f(row.get('p50_ms'), '{:.3f}'):>7} {f(row.get('p50_added_ms'), '{:+.3f}'):>7}   "
                f"{f(row.get('p99_ms'), '{:.3f}'):>7} {f(row.get('p99_added_ms'), '{:+.3f}'):>7}"
            )
    if "json" in results["modes"] and "stream" in results["modes"]:
        gj = results["modes"]["json"]["summary"].get("gateway", {})
        gs = results["modes"]["stream"]["summary"].get("gateway", {})
        if gj.get("rps") and gs.get("rps"):
            results["stream_vs_json_rps"] = round(gs["rps"] / gj["rps"], 3)
            print(f"gateway streaming rps / non-streaming rps: {results['stream_vs_json_rps']:.3f}")
    for mode, entry in results["modes"].items():
        g = entry["summary"].get("gateway", {})
        if g.get("cpu_us_per_request"):
            print(
                f"gateway CPU per request ({mode}, at {c} connections): {g['cpu_us_per_request']:.0f} us "
                f"(= {g['rps_per_core_from_cpu']} rps if it had a core to itself)"
            )
    if meta.get("reference"):
        print("nginx-px = nginx as a keep-alive reverse proxy on the gateway's core: the harness floor for any proxy")
    if rss:
        parts = [f"{k} {v / 1024:.1f} MiB" for k, v in rss.items()]
        print("gateway RSS: " + ", ".join(parts))
    if soak:
        samples = soak["samples"]
        first, last = samples[0][1], samples[-1][1]
        peak = max(s[1] for s in samples)
        print(
            f"soak {soak['seconds']}s ({soak['requests']} requests, {soak['rps']} rps, "
            f"errors {sum(soak['errors'].values())}): RSS "
            f"{first / 1024:.1f} -> {last / 1024:.1f} MiB (peak {peak / 1024:.1f}, "
            f"drift {(last - first) / 1024:+.1f} MiB over {len(samples)} samples)"
        )
        print("  samples (s, MiB): " + " ".join(f"{t}:{v / 1024:.1f}" for t, v in samples))
    if failures:
        print("\nPROBLEMS (results above are not trustworthy):")
        for f in failures:
            print("  " + f)
    results["failures"] = failures
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = results_dir / f"bench-{stamp}.json"
    text = json.dumps(results, indent=2)
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    print(f"\nresults: {path}")
    return 1 if failures else 0


def meta(args: argparse.Namespace) -> None:
    """Collect run facts into the meta file (called by run.sh with key=value pairs)."""
    path = Path(args.file)
    data = json.loads(path.read_text()) if path.exists() else {}
    for pair in args.pairs:
        key, _, value = pair.partition("=")
        target = data
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        try:
            target[leaf] = json.loads(value)
        except ValueError:
            target[leaf] = value
    data.setdefault(
        "host",
        {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
        },
    )
    if "git" not in data:
        try:
            data["git"] = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                check=False,
            ).stdout.strip()
        except OSError:
            data["git"] = ""
    path.write_text(json.dumps(data, indent=2))


def soak_sampler(args: argparse.Namespace) -> None:
    """Sample the gateway's RSS every `interval` seconds for `seconds`; writes samples to `out`."""
    samples = []
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        try:
            samples.append([round(elapsed), rss_kib(args.pid)])
        except OSError:
            break
        print(f"  soak t={elapsed:5.0f}s RSS {samples[-1][1] / 1024:.1f} MiB", flush=True)
        Path(args.out).write_text(json.dumps(samples))
        if elapsed >= args.seconds:
            break
        time.sleep(min(args.interval, max(0.0, args.seconds - elapsed)))


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config")
    c.add_argument("--out", required=True)
    c.add_argument("--mock-port", type=int, required=True)
    c.add_argument("--gateway-port", type=int, required=True)
    c.add_argument("--key", required=True)
    c.add_argument("--extra", default="")
    r = sub.add_parser("rss")
    r.add_argument("pid", type=int)
    m = sub.add_parser("meta")
    m.add_argument("file")
    m.add_argument("pairs", nargs="*")
    s = sub.add_parser("soak")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--interval", type=float, default=10)
    s.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--dir", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--results", required=True)
    args = parser.parse_args()
    if args.cmd == "config":
        write_config(args)
    elif args.cmd == "rss":
        print(rss_kib(args.pid))
    elif args.cmd == "meta":
        meta(args)
    elif args.cmd == "soak":
        soak_sampler(args)
    elif args.cmd == "report":
        return report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
