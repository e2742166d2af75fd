"""Streaming at scale: many slow concurrent streams through the gateway, against the same load sent
straight to the fake upstream in the same run.

Two roles, each a process (bench/streams.sh pins them):
  upstream  an OpenAI-compatible SSE server on raw asyncio sockets: TTFT, then one token every
            INTERVAL, TOKENS tokens, chunked transfer encoding, keep-alive.
  count     instructions per forwarded token of a gateway running under callgrind
            (bench/stream_instructions.sh)
  load      opens streams on raw sockets, ramps to each concurrency level over RAMP seconds, holds
            it for HOLD seconds (a finished stream is replaced at once) and prints one JSON line per
            level: tokens/s, TTFT p50/p99 (streams opened during the ramp and in the steady state
            apart), errors, and the target process's CPU and RSS when its pid is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

TOKEN = b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,' \
        b'"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
DONE = b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,' \
       b'"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":%d,' \
       b'"total_tokens":%d}}\n\ndata: [DONE]\n\n'
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
# The same question in each client API: its path, its body, and how one forwarded token reads there
# (the fake upstream speaks Chat Completions: the other two are translated by the gateway).
DIALECTS: dict[str, tuple[str, dict[str, Any], bytes]] = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hello"}]}, b'"content":"tok "'),
    "responses": ("/v1/responses", {"input": "hello", "store": False}, b'"delta":"tok "'),
    "messages": ("/v1/messages", {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 1024},
                 b'"text":"tok "'),
}


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def upstream_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ttft: float,
                        interval: float, tokens: int) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            await asyncio.sleep(ttft)
            writer.write(HEAD + chunk(TOKEN))
            for _ in range(tokens - 1):
                await asyncio.sleep(interval)
                writer.write(chunk(TOKEN))
            writer.write(chunk(DONE % (tokens, tokens + 5)) + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def upstream(port: int, ttft: float, interval: float, tokens: int) -> None:
    server = await asyncio.start_server(lambda r, w: upstream_conn(r, w, ttft, interval, tokens),
                                        "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


class Level:
    def __init__(self) -> None:
        self.ttft_ramp: list[float] = []
        self.ttft_steady: list[float] = []
        self.ttft_burst: list[float] = []
        self.tokens = 0
        self.errors = 0
        self.done = 0


def request_for(dialect: str, model: str) -> tuple[str, bytes, bytes]:
    """Path, body and token marker of a streamed request in the client API `dialect`."""
    path, fields, marker = DIALECTS[dialect]
    return path, json.dumps({"model": model, "stream": True, **fields}).encode(), marker


async def one_stream(port: int, path: str, body: bytes, level: Level, ttfts: list[float],
                     marker: bytes = DIALECTS["chat"][2]) -> None:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        level.errors += 1
        return
    try:
        writer.write(b"POST %s HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer sk-bench\r\ncontent-length: %d\r\n\r\n%s"
                     % (path.encode(), len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            level.errors += 1
            return
        first = True
        tail = b""
        while True:
            data = await reader.read(65536)
            if not data:
                level.errors += 1
                return
            if first:
                ttfts.append(time.perf_counter() - started)
                first = False
            level.tokens += data.count(marker)
            tail = (tail + data)[-16:]
            if b"[DONE]" in tail or b"0\r\n\r\n" in tail:
                level.done += 1
                return
    except (OSError, asyncio.IncompleteReadError):
        level.errors += 1
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


async def run_level(port: int, path: str, body: bytes, n: int, ramp: float, hold: float,
                    pid: int | None, burst: int = 0, marker: bytes = DIALECTS["chat"][2]) -> dict[str, object]:
    level = Level()
    tasks: set[asyncio.Task[None]] = set()
    stop = False

    def start(ramping: bool) -> None:
        task = asyncio.create_task(one_stream(port, path, body, level,
                                              level.ttft_ramp if ramping else level.ttft_steady, marker))
        tasks.add(task)

        def again(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            if not stop:
                start(False)
        task.add_done_callback(again)

    rss_before = rss_kib(pid) if pid else 0
    for _ in range(n):
        start(True)
        await asyncio.sleep(ramp / n)
    tokens0, cpu0, t0 = level.tokens, cpu_seconds(pid) if pid else 0.0, time.perf_counter()
    await asyncio.sleep(hold)
    elapsed = time.perf_counter() - t0
    tokens = level.tokens - tokens0
    cpu = (cpu_seconds(pid) - cpu0) / elapsed if pid else None
    rss = rss_kib(pid) if pid else 0
    if burst:  # new connections all at once on top of the level's streams (issue 19's defect 1)
        await asyncio.gather(*(one_stream(port, path, body, level, level.ttft_burst, marker) for _ in range(burst)))
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"streams": n, "tokens_per_s": round(tokens / elapsed), "cpu": round(cpu, 3) if cpu is not None else None,
            "tokens_per_s_per_core": round(tokens / elapsed / cpu) if cpu else None,
            "ttft_ramp_p50_ms": pct(level.ttft_ramp, 0.5), "ttft_ramp_p99_ms": pct(level.ttft_ramp, 0.99),
            "ttft_steady_p50_ms": pct(level.ttft_steady, 0.5), "ttft_steady_p99_ms": pct(level.ttft_steady, 0.99),
            "rss_mib": round(rss / 1024, 1) if pid else None,
            "rss_kib_per_stream": round((rss - rss_before) / n, 1) if pid else None,
            **({"burst": burst, "ttft_burst_p50_ms": pct(level.ttft_burst, 0.5),
                "ttft_burst_p99_ms": pct(level.ttft_burst, 0.99)} if burst else {}),
            "completed": level.done, "errors": level.errors}


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def newest_total(out_dir: str, pid: int) -> int:
    """The Ir total of the newest callgrind dump of `pid`."""
    dumps = sorted(Path(out_dir).glob(f"cg.{pid}*"), key=lambda p: p.stat().st_mtime)
    for line in reversed(dumps[-1].read_text(errors="replace").splitlines()):
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise SystemExit(f"streams: no totals in {dumps[-1]}")


async def count(args: argparse.Namespace) -> None:
    """Instructions per forwarded token: `--concurrency` streams at a time, `--rounds` times after
    one round of warm-up, the gateway's counters zeroed before and dumped after (it runs under
    callgrind, started with instrumentation off)."""
    path, body, marker = request_for(args.dialect, args.model)
    callgrind(args.pid, "--instr=on")
    for measured in (False, True):
        if measured:
            callgrind(args.pid, "--zero")
        level = Level()
        for _ in range(args.rounds if measured else 1):
            await asyncio.gather(*(one_stream(args.port, path, body, level, level.ttft_ramp, marker)
                                   for _ in range(args.concurrency)))
        if level.errors:
            raise SystemExit(f"streams: {level.errors} streams failed")
    callgrind(args.pid, "--dump")
    total = newest_total(args.out_dir, args.pid)
    print(json.dumps({"streams": level.done, "tokens": level.tokens,
                      "instructions_per_token": round(total / level.tokens),
                      "instructions_per_stream": round(total / level.done)}), flush=True)


async def load(args: argparse.Namespace) -> None:
    path, body, marker = request_for(args.dialect, args.model)
    for n in args.levels:
        result = await run_level(args.port, path, body, n, args.ramp, args.hold, args.pid, args.burst, marker)
        print(json.dumps({"target": args.label, **result}), flush=True)


def main() -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    up.add_argument("--ttft", type=float, default=0.2)
    up.add_argument("--interval", type=float, default=0.02)
    up.add_argument("--tokens", type=int, default=200)
    lo = sub.add_parser("load")
    lo.add_argument("--port", type=int, required=True)
    lo.add_argument("--dialect", choices=sorted(DIALECTS), default="chat",
                    help="the client API (the upstream speaks Chat Completions)")
    lo.add_argument("--model", default="m")
    lo.add_argument("--levels", type=int, nargs="+", default=[100, 500, 1000])
    lo.add_argument("--ramp", type=float, default=2.0)
    lo.add_argument("--hold", type=float, default=10.0)
    lo.add_argument("--pid", type=int, default=None)
    lo.add_argument("--label", default="")
    lo.add_argument("--burst", type=int, default=0, help="after each level's hold, open this many streams at once")
    co = sub.add_parser("count")
    co.add_argument("--port", type=int, required=True)
    co.add_argument("--dialect", choices=sorted(DIALECTS), default="chat",
                    help="the client API (the upstream speaks Chat Completions)")
    co.add_argument("--model", default="m")
    co.add_argument("--pid", type=int, required=True)
    co.add_argument("--out-dir", required=True)
    co.add_argument("--concurrency", type=int, default=5)
    co.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.role == "upstream":
        asyncio.run(upstream(args.port, args.ttft, args.interval, args.tokens))
    elif args.role == "count":
        asyncio.run(count(args))
    else:
        asyncio.run(load(args))


if __name__ == "__main__":
    main()
