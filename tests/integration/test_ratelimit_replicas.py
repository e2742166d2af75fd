"""Two gateway replicas (real uvicorn servers, each with its own event loop and Redis client) share
one real Redis: limits hold exactly across them, revocations reach both, and a Redis killed and
restarted under load costs no 5xx (fail_open) and limits come back by themselves."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import httpx
import pytest

from gateway.tokens import TokenCounter
from tests.contract.stores import real_redis_up
from tests.support.openai_fake import chat_completion, openai_echo
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, free_port

pytestmark = pytest.mark.skipif(not real_redis_up(), reason="no Redis at 127.0.0.1:6379")

KEY = "sk-gw-shared-0123456789abcdef"
MASTER = "sk-master-0123456789abcdef"
MSG = [{"role": "user", "content": "hello there"}]

CONFIG = """
store: {{redis_url: "{redis}", key_prefix: "{prefix}", timeout: {timeout}, failure_policy: {policy}}}
auth:
  master_key: "{master}"
  keys:
    - {{name: shared, key: "{key}", limits: {limits}}}
    - {{name: probe, key: "sk-gw-probe-0123456789abcdef", limits: {{rpm: 2}}}}
providers:
  up: {{type: openai, base_url: "{url}/v1"}}
models:
  gpt: {{deployments: [{{provider: up, model: m}}], retries: 0}}
"""


def config(url: str, limits: str, *, redis: str = "redis://127.0.0.1:6379/0", prefix: str | None = None,
           policy: str = "fail_open", timeout: str = "2s") -> str:
    return CONFIG.format(url=url, limits=limits, redis=redis, prefix=prefix or f"t-limits-{uuid4().hex[:8]}",
                         policy=policy, timeout=timeout, master=MASTER, key=KEY)


@contextlib.contextmanager
def replicas(text: str, n: int = 2) -> Iterator[list[GatewayServer]]:
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(GatewayServer(text)) for _ in range(n)]
        yield servers
        _cleanup(text)


def _cleanup(text: str) -> None:
    import redis

    prefix = text.split('key_prefix: "', 1)[1].split('"', 1)[0]
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = list(client.scan_iter(match=prefix + ":*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


def hammer(servers: list[GatewayServer], count: int, body: dict[str, object], key: str = KEY) -> list[httpx.Response]:
    headers = {"authorization": f"Bearer {key}"}
    clients = [httpx.Client(base_url=s.url, headers=headers, timeout=20) for s in servers]
    try:
        def one(i: int) -> httpx.Response:
            return clients[i % len(clients)].post("/v1/chat/completions", json=body)

        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for c in clients:
            c.close()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(openai_echo) as fake:
        yield fake


def test_rpm_exact_across_replicas(upstream: FakeUpstream) -> None:
    with replicas(config(upstream.url, "{rpm: 10}")) as servers:
        responses = hammer(servers, 40, {"model": "gpt", "messages": MSG})
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 10 and statuses.count(429) == 30
    assert len(upstream.requests) == 10
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limit_exceeded"
            assert 1 <= int(r.headers["retry-after"]) <= 60


def test_tpm_exact_across_replicas(upstream: FakeUpstream) -> None:
    counter = TokenCounter()
    assert counter.preload(["cl100k_base"])["cl100k_base"]
    prompt, _ = counter.count_prompt("chat", {"messages": MSG}, "gpt")
    reserve = prompt + 100

    def exact_usage(request: Recorded) -> Reply:  # real usage equal to the reservation: nothing refunded
        body = chat_completion("ok", "m")
        body["usage"] = {"prompt_tokens": prompt, "completion_tokens": 100, "total_tokens": reserve}
        return Reply(json=body)

    upstream.handler = exact_usage
    with replicas(config(upstream.url, f"{{tpm: {7 * reserve + reserve // 2}}}")) as servers:
        responses = hammer(servers, 30, {"model": "gpt", "messages": MSG, "max_tokens": 100})
    assert [r.status_code for r in responses].count(200) == 7
    assert len(upstream.requests) == 7


def test_concurrency_exact_across_replicas(upstream: FakeUpstream) -> None:
    release = asyncio.Event()

    async def held(request: Recorded) -> Reply:
        await release.wait()
        return openai_echo(request)

    upstream.handler = held
    with replicas(config(upstream.url, "{max_parallel: 4}")) as servers:
        headers = {"authorization": f"Bearer {KEY}"}
        clients = [httpx.Client(base_url=s.url, headers=headers, timeout=20) for s in servers]
        with ThreadPoolExecutor(max_workers=12) as pool:
            futures = [pool.submit(clients[i % 2].post, "/v1/chat/completions", json={"model": "gpt", "messages": MSG})
                       for i in range(12)]
            deadline = time.monotonic() + 15
            while sum(f.done() for f in futures) < 8 and time.monotonic() < deadline:
                time.sleep(0.02)
            refused = [f.result().status_code for f in futures if f.done()]
            upstream._loop.call_soon_threadsafe(release.set)
            statuses = [f.result().status_code for f in futures]
        for c in clients:
            c.close()
        # Released leases are free again at once (not only after their TTL).
        after = hammer(servers, 4, {"model": "gpt", "messages": MSG})
    assert refused == [429] * 8
    assert statuses.count(200) == 4 and statuses.count(429) == 8
    assert [r.status_code for r in after] == [200] * 4


def test_revocation_reaches_every_replica(upstream: FakeUpstream) -> None:
    with replicas(config(upstream.url, "{rpm: 100}")) as (a, b):
        admin = {"authorization": f"Bearer {MASTER}"}
        created = httpx.post(a.url + "/admin/keys", headers=admin, json={"name": "rt"}).json()
        headers = {"authorization": f"Bearer {created['key']}"}
        body = {"model": "gpt", "messages": MSG}
        assert _eventually(lambda: httpx.post(b.url + "/v1/chat/completions", headers=headers, json=body).status_code,
                           200, within=1.5)
        httpx.delete(f"{a.url}/admin/keys/{created['id']}", headers=admin)
        assert httpx.post(a.url + "/v1/chat/completions", headers=headers, json=body).status_code == 401
        assert _eventually(lambda: httpx.post(b.url + "/v1/chat/completions", headers=headers, json=body).status_code,
                           401, within=1.5)


def _eventually(probe: object, expected: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        if probe() == expected:  # type: ignore[operator]
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Redis trouble
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def own_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not _answers(port):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def _answers(port: int) -> bool:
    import redis

    try:
        client = redis.Redis(port=port, socket_timeout=0.2, socket_connect_timeout=0.2)
        ok = bool(client.ping())
        client.close()
        return ok
    except redis.RedisError:
        return False


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_killed_and_restarted_under_load(upstream: FakeUpstream) -> None:
    port = free_port()
    text = config(upstream.url, "{rpm: 100000}", redis=f"redis://127.0.0.1:{port}/0", prefix="t-limits",
                  timeout="200ms")
    statuses: list[int] = []
    stop = threading.Event()
    with own_redis(port) as first, replicas(text) as servers:

        def load() -> None:
            with httpx.Client(headers={"authorization": f"Bearer {KEY}"}, timeout=10) as client:
                i = 0
                while not stop.is_set():
                    r = client.post(servers[i % 2].url + "/v1/chat/completions", json={"model": "gpt", "messages": MSG})
                    statuses.append(r.status_code)
                    i += 1

        workers = [threading.Thread(target=load) for _ in range(3)]
        for w in workers:
            w.start()
        try:
            time.sleep(0.3)
            first.kill()  # our own redis-server, by its handle
            first.wait(5)
            during = len(statuses)
            time.sleep(0.5)
            assert len(statuses) > during  # still serving while Redis is gone
            with own_redis(port):
                time.sleep(0.3)
                stop.set()
                for w in workers:
                    w.join(10)
                # Recovery: the limiter is back and exact (the probe key allows 2 a minute).
                probe = {"authorization": "Bearer sk-gw-probe-0123456789abcdef"}
                body = {"model": "gpt", "messages": MSG}
                assert _eventually(lambda: httpx.post(servers[0].url + "/v1/chat/completions", headers=probe,
                                                      json=body).headers.get("x-ratelimit-limit-requests"),
                                   "2", within=5)  # type: ignore[arg-type]
                later = [httpx.post(s.url + "/v1/chat/completions", headers=probe, json=body).status_code
                         for s in servers]
                assert later == [200, 429]
        finally:
            stop.set()
            for w in workers:
                w.join(10)
        registry = servers[0].services.metrics.registry  # read through the registry: tallies folded first
        failed = sum(s.value for family in registry.collect() if family.name == "gateway_ratelimit_store_failures"
                     for s in family.samples if s.name.endswith("_total"))
    assert statuses and all(s == 200 for s in statuses)
    assert failed > 0


@pytest.mark.parametrize(("policy", "status"), [("fail_open", 200), ("fail_closed", 503)])
def test_failure_policy_without_redis(upstream: FakeUpstream, policy: str, status: int) -> None:
    text = config(upstream.url, "{rpm: 5}", redis=f"redis://127.0.0.1:{free_port()}/0", policy=policy, timeout="200ms")
    with GatewayServer(text) as server:
        r = httpx.post(server.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                       json={"model": "gpt", "messages": MSG})
    assert r.status_code == status
    if status == 503:
        assert r.json()["error"]["code"] == "store_unavailable"
