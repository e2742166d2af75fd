"""Accounting under store trouble, end to end (uvicorn, the openai SDK, a fake OpenAI upstream): a
provider answer with out-of-range usage among normal calls, and Redis stalls longer than the store
timeout under concurrent load. Whatever is re-sent, the usage log holds one record per answered
call, spend equals the sum of the log, and a budget equals the true spend. Stalls and outages use a
private redis-server on a free port (the shared one at 6379 is never slowed or stopped)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from gateway.accounting.store_redis import decode_record, usage_stream_key
from tests.support.openai_fake import chat_chunks, chat_completion, last_user_text
from tests.support.redis_topologies import MISSING, Servers, cli
from tests.support.scratch_redis import scratch_prefix
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, free_port, metrics_show, sse_lines

SHARED_REDIS = "redis://127.0.0.1:6379/0"
MASTER = "sk-master-0123456789abcdef"
APP_KEY = "sk-gw-app-0123456789abcdef"

CONFIG = """
store: {{redis_url: "{redis_url}", key_prefix: "{prefix}"{store_extra}}}
auth:
  master_key: {master}
  keys: [{{name: app, key: {app}, budget: {{usd: 1000, period: day}}}}]
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-secret}}
models:
  gpt:
    deployments: [{{provider: up, model: gpt-up, price: {{input: 2.5, output: 10}}}}]
    retries: 0
    fallbacks: [backup]
    cooldown: {{failures: 1000, min_calls: 1000}}
  backup:
    deployments: [{{provider: up, model: backup-up, name: backup, price: {{input: 1, output: 1}}}}]
    retries: 0
accounting: {{prices_file: /nonexistent/prices.yaml, reserve_completion_tokens: 2, retry_interval: 200ms}}
"""

BROKEN_USAGE: dict[str, Any] = {"huge": 10**30, "negative": -7, "string": "12"}


def handler(request: Recorded) -> Reply:
    body = request.json
    text = last_user_text(body)
    kind = text.split()[0]
    broken = body["model"] == "gpt-up" and kind in BROKEN_USAGE
    if body.get("stream"):
        events = chat_chunks("echo: " + text, body["model"], include_usage=True, prompt_tokens=9)
        if broken:
            events[-1]["usage"]["prompt_tokens"] = BROKEN_USAGE[kind]
        return Reply(chunks=sse_lines(events), chunk_delay=0.02)  # the answer goes out before its usage
    answer = chat_completion("echo: " + text, body["model"], prompt_tokens=9)
    if broken:
        answer["usage"]["prompt_tokens"] = BROKEN_USAGE[kind]
    return Reply(json=answer)


def config(url: str, redis_url: str, prefix: str, store_extra: str = "") -> str:
    return CONFIG.format(url=url, redis_url=redis_url, prefix=prefix, master=MASTER, app=APP_KEY,
                         store_extra=store_extra)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(handler) as fake:
        yield fake


@pytest.fixture
def shared_prefix() -> Iterator[str]:
    with scratch_prefix("trouble") as prefix:
        yield prefix


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[Servers, int]]:
    if MISSING:
        pytest.skip(MISSING)
    servers = Servers(tmp_path)
    port = free_port()
    try:
        yield servers, port
    finally:
        servers.stop_all()


def admin(gw: GatewayServer, path: str) -> Any:
    response = httpx.get(gw.url + path, headers={"authorization": f"Bearer {MASTER}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def call(client: openai.OpenAI, text: str) -> str | None:
    """One call; the request id it was answered under, None when it was not answered."""
    try:
        raw = client.chat.completions.with_raw_response.create(model="gpt", messages=[{"role": "user",
                                                                                      "content": text}])
    except openai.APIError:
        return None
    return raw.headers["x-request-id"]


def assert_accounting_exact(gw: GatewayServer, answered: list[str]) -> None:
    """One record per answered call; spend (by alias, by deployment) equals the log; the key's budget
    equals the key's true spend."""
    assert "gateway_accounting_retry_queue 0.0" in metrics_show(gw.url, "gateway_accounting_retry_queue 0.0", 20)
    records = admin(gw, "/admin/usage?since=0&limit=10000")["records"]
    assert sorted(r["request_id"] for r in records) == sorted(answered)
    cost = sum(r["cost_micro_usd"] for r in records)
    assert cost > 0
    for by in ("alias", "deployment"):
        spend = admin(gw, f"/admin/spend?by={by}&period=day")["spend"]
        assert sum(e["requests"] for e in spend.values()) == len(answered), by
        assert sum(e["cost_micro_usd"] for e in spend.values()) == cost, by
    (budget,) = admin(gw, "/admin/budgets")["budgets"]
    assert budget["used_usd"] == f"{cost // 1_000_000}.{cost % 1_000_000:06d}"


@pytest.mark.parametrize("where", ["embedded", "redis"])
def test_out_of_range_usage_fails_the_attempt_and_leaves_accounting_exact(
        where: str, upstream: FakeUpstream, make_client: Any, request: pytest.FixtureRequest) -> None:
    redis_url, prefix = ("", "gw") if where == "embedded" else (SHARED_REDIS, request.getfixturevalue("shared_prefix"))
    with GatewayServer(config(upstream.url, redis_url, prefix)) as gw:
        client = make_client(gw.url + "/v1", api_key=APP_KEY)
        texts = [f"{kind} call {i}" for i in range(8) for kind in ("fine", *BROKEN_USAGE)]
        with ThreadPoolExecutor(4) as pool:
            answered = list(pool.map(lambda text: call(client, text), texts))
        assert None not in answered  # the broken answers fell back to `backup`
        broken = [r for r in upstream.requests if r.json["model"] == "gpt-up" and last_user_text(r.json).split()[0]
                  in BROKEN_USAGE]
        assert len(broken) == 24 and sum(r.json["model"] == "backup-up" for r in upstream.requests) == 24
        # In a stream the usage comes last, after the answer went out: the stream ends with an error
        # event, and the call is billed on an estimate.
        raw = client.chat.completions.with_raw_response.create(
            model="gpt", messages=[{"role": "user", "content": "huge streamed call"}], stream=True,
            stream_options={"include_usage": True})
        with pytest.raises(openai.APIError, match="invalid usage count"):
            list(raw.parse())
        assert_accounting_exact(gw, [*(a for a in answered if a is not None), raw.headers["x-request-id"]])
        records = admin(gw, "/admin/usage?since=0&limit=10000")["records"]
        assert {r["deployment"] for r in records} == {"up/gpt-up", "backup"}
        assert max(r["prompt_tokens"] for r in records) < 100
        assert [r["estimated"] for r in records if r["status"] != 200] == [True]


def test_redis_stalls_longer_than_the_store_timeout_do_not_multiply_accounting(
        upstream: FakeUpstream, make_client: Any, private_redis: tuple[Servers, int]) -> None:
    servers, port = private_redis
    servers.start(port, "--enable-debug-command", "local")
    # Calls settle before their answer (the key has a budget), so each waits out a stall's timeouts.
    with GatewayServer(config(upstream.url, f"redis://127.0.0.1:{port}/0", "t-stall",
                              ", timeout: 250ms")) as gw:
        client = make_client(gw.url + "/v1", api_key=APP_KEY)
        stop = threading.Event()
        answered: list[str | None] = []

        def load(worker: int) -> None:
            n = 0
            while not stop.is_set():
                answered.append(call(client, f"fine {worker}-{n}"))
                n += 1

        def stall() -> None:
            for _ in range(3):
                time.sleep(0.5)
                cli(port, "debug", "sleep", "1.2")

        with ThreadPoolExecutor(5) as pool:
            workers = [pool.submit(load, w) for w in range(4)]
            pool.submit(stall).result()
            time.sleep(0.5)
            stop.set()
            for worker in workers:
                worker.result()
        ok = [a for a in answered if a is not None]
        assert len(ok) >= 20, f"only {len(ok)} calls answered"
        assert_accounting_exact(gw, ok)


def test_the_retry_queue_is_sent_when_the_store_is_back_with_no_request_arriving(
        upstream: FakeUpstream, make_client: Any, private_redis: tuple[Servers, int]) -> None:
    servers, port = private_redis
    url = f"redis://127.0.0.1:{port}/0"
    with GatewayServer(config(upstream.url, url, "t-idle")) as gw:
        client = make_client(gw.url + "/v1", api_key=APP_KEY)
        answered = [call(client, f"fine {i}") for i in range(3)]  # Redis down: fail open, writes queued
        assert None not in answered
        assert "gateway_accounting_retry_queue 3.0" in metrics_show(gw.url, "gateway_accounting_retry_queue 3.0")
        servers.start(port)
        # No request reaches the gateway from here on: its own timer sends the queue.
        reader = redis.Redis.from_url(url, socket_timeout=2)
        try:
            deadline = time.monotonic() + 10
            while reader.xlen(usage_stream_key("t-idle")) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            entries: Any = reader.xrange(usage_stream_key("t-idle"))
        finally:
            reader.close()
        assert sorted(decode_record(fields)["request_id"] for _, fields in entries) == sorted(map(str, answered))
        assert "gateway_accounting_retry_queue 0.0" in metrics_show(gw.url, "gateway_accounting_retry_queue 0.0")
