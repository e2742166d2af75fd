"""Graceful shutdown of a real `gateway serve` process: SIGTERM stops accepting, lets a stream in flight
finish, flushes the accounting writes that failed while Redis was away, and the process exits 0."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import redis

from gateway.accounting.store_redis import decode_record
from tests.support.redis_topologies import MISSING, Servers
from tests.support.servers import free_port, metrics_show

ROOT = Path(__file__).resolve().parents[2]
# uvicorn re-raises the signal it handled once the graceful shutdown is done, so a clean exit after
# SIGTERM reports "terminated by SIGTERM" (the default action of the re-raised signal).
EXITED = (0, -signal.SIGTERM)

CONFIG = """
server: {{host: 127.0.0.1, port: {port}, shutdown_grace: {grace}}}
store: {{redis_url: "{redis_url}", timeout: 300ms, key_prefix: "{prefix}"}}
auth: {{required: false}}
providers:
  slow: {{type: mock, ttft: 50ms, chunk_delay: 100ms}}
  fast: {{type: mock}}
models:
  slow: {{deployments: [{{provider: slow, model: lorem}}]}}
  demo: {{deployments: [{{provider: fast, model: echo}}]}}
"""


@contextlib.contextmanager
def serve(tmp_path: Path, redis_url: str = "", prefix: str = "gw",
          grace: str = "20s") -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(port=port, redis_url=redis_url, prefix=prefix, grace=grace))
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--log-format", "text"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def refused(base: str) -> bool:
    host, port = base.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


def test_sigterm_lets_a_stream_in_flight_finish_then_exits(tmp_path: Path) -> None:
    with serve(tmp_path) as (proc, base):
        chunks: list[str] = []
        first = threading.Event()
        done: list[BaseException | None] = []

        def stream() -> None:
            try:
                body = {"model": "slow", "stream": True, "max_tokens": 20,
                        "messages": [{"role": "user", "content": "hi"}]}
                with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as response:
                    assert response.status_code == 200
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            chunks.append(line[6:])
                            first.set()
                done.append(None)
            except BaseException as exc:  # reported by the main thread
                done.append(exc)
                first.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.wait(15), "no first chunk"
        proc.send_signal(signal.SIGTERM)
        # No new connections once the signal is handled, while the stream is still going.
        deadline = time.monotonic() + 5
        while not refused(base):
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        assert proc.poll() is None, "exited before the stream finished"
        reader.join(20)
        assert done == [None], done
        assert chunks[-1] == "[DONE]"
        words = sum(1 for c in chunks[:-1] if '"content":"' in c and '"content":""' not in c)
        assert words == 20, chunks
        assert proc.wait(15) in EXITED


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_sigterm_flushes_accounting_writes_queued_while_redis_was_down(tmp_path: Path) -> None:
    servers = Servers(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    redis_port = free_port()
    prefix = f"t-deploy-{uuid4().hex[:8]}"
    try:
        servers.start(redis_port)
        with serve(tmp_path, f"redis://127.0.0.1:{redis_port}/0", prefix) as (proc, base):
            body = {"model": "demo", "messages": [{"role": "user", "content": "kept for later"}]}
            assert httpx.post(f"{base}/v1/chat/completions", json=body, timeout=10).status_code == 200
            # Its settle writes follow the answer: let them land before Redis goes.
            assert 'gateway_store_duration_seconds_count{operation="settle"} 1.0' in metrics_show(
                base, 'gateway_store_duration_seconds_count{operation="settle"} 1.0')
            servers.kill(redis_port)
            # Served (fail open) while Redis is down; its accounting writes wait in the retry queue.
            assert httpx.post(f"{base}/v1/chat/completions", json=body, timeout=10).status_code == 200
            assert "gateway_accounting_retry_queue 1.0" in metrics_show(base, "gateway_accounting_retry_queue 1.0")
            servers.start(redis_port)  # back, empty: only the flush can put a record there
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) in EXITED
        client = redis.Redis(port=redis_port)
        try:
            records = client.xrange(f"{prefix}:{{usage}}:usage")
        finally:
            client.close()
        assert len(records) == 1
        assert decode_record(records[0][1])["alias"] == "demo"
    finally:
        servers.stop_all()


def test_streams_cut_by_the_shutdown_grace_end_with_an_error_event_and_are_recorded_as_cut(tmp_path: Path) -> None:
    """Streams still running when `shutdown_grace` runs out end with the dialect's error event (never
    a bare close), the log has one structured line each and no traceback, and their usage records
    carry status 499."""
    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"t-cut-{uuid4().hex[:8]}"
    streams = 3
    try:
        with serve(tmp_path, "redis://127.0.0.1:6379/0", prefix, grace="1s") as (proc, base):
            lines: list[list[str]] = [[] for _ in range(streams)]
            started = threading.Barrier(streams + 1)

            def stream(out: list[str]) -> None:
                body = {"model": "slow", "stream": True, "max_tokens": 500,
                        "messages": [{"role": "user", "content": "hi"}]}
                with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as response:
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            if not out:
                                started.wait(15)
                            out.append(line[6:])

            readers = [threading.Thread(target=stream, args=(out,)) for out in lines]
            for reader in readers:
                reader.start()
            started.wait(15)
            proc.send_signal(signal.SIGTERM)
            for reader in readers:
                reader.join(30)
            assert proc.wait(30) in EXITED
        for out in lines:
            assert out[-1] != "[DONE]"
            error = json.loads(out[-1])["error"]
            assert error["code"] == "stream_cut_by_shutdown", out[-1]
        log = (tmp_path / "gateway.log").read_text()
        assert log.count("stream cut by shutdown") == streams, log
        assert "Traceback" not in log, log
        written: Any = client.xrange(f"{prefix}:{{usage}}:usage")
        records = [decode_record(fields) for _, fields in written]
        assert sorted(r["status"] for r in records) == ["499"] * streams, records
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
