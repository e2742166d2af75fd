"""Settles left for the gateway's next wait on a provider (tasks.IdleWork), through the real app under
uvicorn on the embedded store: a call's usage record, spend and metrics are written while a later
call waits on its provider, or shortly after the answer when none comes; everything that reads them
(/metrics, the admin reads, shutdown) sees every call answered before it; and a call whose settle a
later call reads (a cache entry) settles at once."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from gateway.tasks import IdleWork
from tests.support.redis_topologies import wait_for
from tests.support.servers import GatewayServer

MASTER = "sk-master-0123456789abcdef"
CONFIG = f"""
auth: {{required: false, master_key: {MASTER}}}
providers:
  mock: {{type: mock, latency: 20ms}}  # each call waits on its provider, as a real one does
models:
  m: {{deployments: [{{provider: mock, model: echo, price: {{input: 1, output: 1}}}}]}}
  pair:
    strategy: least-busy
    deployments: [{{provider: mock, model: echo, name: one}}, {{provider: mock, model: echo, name: two}}]
  memo:
    deployments: [{{provider: mock, model: echo}}]
    cache: {{ttl: 1h}}
"""
ADMIN = {"authorization": f"Bearer {MASTER}"}


def call(client: httpx.Client, model: str = "m", text: str = "hi") -> httpx.Response:
    answer = client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": text}]})
    assert answer.status_code == 200, answer.text
    return answer


def served(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("gateway_requests_total{") and 'alias="m"' in line)


def patient(delay: float = 60.0) -> GatewayServer:
    """A gateway whose deferred settles wait `delay` s for a call to come (the timer's part)."""
    server = GatewayServer(CONFIG)
    server.services.idle = IdleWork(delay=delay)  # before startup: the pipeline takes it then
    return server


def test_a_settle_runs_while_the_next_call_waits_and_every_read_sees_it() -> None:
    with patient() as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        call(client)
        assert len(gw.services.idle) == 1  # answered, its settle left for the next wait
        call(client)
        assert len(gw.services.idle) == 1  # the first settled while the second waited on its provider
        assert served(client) == 2  # the scrape ran the second's settle first
        assert len(gw.services.idle) == 0
        call(client, text="third")
        usage = client.get("/admin/usage?since=0&limit=100", headers=ADMIN).json()["records"]
        assert [r["status"] for r in usage] == [200, 200, 200]
        spend = client.get("/admin/spend?by=alias", headers=ADMIN).json()
        assert "m" in str(spend) and len(gw.services.idle) == 0


def test_a_streamed_call_settles_the_same_way() -> None:
    with patient() as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        stream(client)
        settled_later(gw)
        call(client)
        assert len(gw.services.idle) == 1 and served(client) == 2 and len(gw.services.idle) == 0
        usage = client.get("/admin/usage?since=0&limit=100", headers=ADMIN).json()["records"]
        assert sorted(r["stream"] for r in usage) == [False, True]


def stream(client: httpx.Client, model: str = "m") -> httpx.Response:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with client.stream("POST", "/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        assert list(answer.iter_lines())[-2:] == ["data: [DONE]", ""]
    return answer


def settled_later(gw: GatewayServer, pending: int = 1) -> None:
    """Wait until the stream's settle is deferred (once the provider's end has been read)."""
    wait_for(lambda: len(gw.services.idle) == pending, "the stream's settle to be deferred", timeout=5)


def test_the_settles_wait_is_not_counted_as_the_calls_time() -> None:
    with patient() as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        call(client)
        time.sleep(0.3)  # its settle waits for the next call: the stream
        stream(client)
        settled_later(gw)
        time.sleep(0.3)  # the stream's waits for the scrape
        text = client.get("/metrics").text
        usage = client.get("/admin/usage?since=0&limit=100", headers=ADMIN).json()["records"]
    assert [r["latency_ms"] < 200 for r in usage] == [True, True]  # the provider takes 20 ms
    count = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith("gateway_overhead_seconds_bucket{") and 'le="0.1"' in line and 'alias="m"' in line]
    assert count == [2.0]  # both calls' own time is well under 100 ms


def test_a_finished_stream_frees_its_deployment_before_the_next_call_routes() -> None:
    with patient() as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        stream(client, "pair")
        settled_later(gw)
        stats = gw.services.extra["routing.stats"]
        assert stats.inflight("one") + stats.inflight("two") == 0


def test_the_access_log_has_a_deferred_streams_cost(caplog: pytest.LogCaptureFixture) -> None:
    with patient() as gw, httpx.Client(base_url=gw.url, timeout=10) as client, \
            caplog.at_level(logging.INFO, logger="gateway.access"):
        stream(client)
        settled_later(gw)
        wait_for(lambda: any(r.name == "gateway.access" for r in caplog.records), "the access log line", timeout=5)
    line = next(r for r in caplog.records if r.name == "gateway.access").fields  # type: ignore[attr-defined]
    assert line["stream"] is True and line["cost_usd"] is not None and line["cost_usd"] > 0


def test_without_another_call_a_settle_runs_moments_after_the_answer() -> None:
    with patient(delay=0.05) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        call(client)
        wait_for(lambda: len(gw.services.idle) == 0, "the deferred settle to run", timeout=5)
        records = asyncio.run(gw.services.store.usage_read(0, 2**62, 10))
        assert len(records) == 1 and records[0]["alias"] == "m"


def test_a_cached_call_settles_at_once_so_the_same_call_next_is_a_hit() -> None:
    with patient() as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        first = call(client, "memo", "same question")
        assert first.headers["x-gateway-cache"] == "MISS" and len(gw.services.idle) == 0
        assert call(client, "memo", "same question").headers["x-gateway-cache"] == "HIT"


def test_shutdown_writes_what_was_left_for_later() -> None:
    gw = patient()
    with gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        call(client)
        assert len(gw.services.idle) == 1
    records = asyncio.run(gw.services.store.usage_read(0, 2**62, 10))
    assert len(records) == 1 and len(gw.services.idle) == 0
