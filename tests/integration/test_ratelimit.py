"""Rate limits and runtime keys through the real app (uvicorn) and the openai SDK, on the embedded
store: headers, 429s the SDK understands, TPM reconciliation, concurrency released when a client
leaves mid-stream, deployment-scope skipping, and the admin key API."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import orjson
import pytest

from gateway.tokens import TokenCounter
from tests.support.openai_fake import chat_completion, openai_echo
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, read_answer, sse_lines

KEY = "sk-gw-limited-0123456789abcdef"
MASTER = "sk-master-0123456789abcdef"

CONFIG = """
auth:
  master_key: "{master}"
  keys:
    - {{name: app, team: search, key: "{key}", limits: {{rpm: 3, tpm: 100000}}}}
    - {{name: tight, key: "sk-gw-tight-0123456789abcdef", limits: {{tpm: 300}}}}
    - {{name: one, key: "sk-gw-one-0123456789abcdef", limits: {{max_parallel: 1}}}}
    - {{name: free, key: "sk-gw-free-0123456789abcdef"}}
  teams:
    search: {{limits: {{rpm: 100}}}}
providers:
  up: {{type: openai, base_url: "{url}/v1"}}
models:
  gpt:
    deployments: [{{provider: up, model: m}}]
    retries: 0
  pinned:
    strategy: priority
    deployments:
      - {{provider: up, model: first, priority: 0, limits: {{rpm: 1}}}}
      - {{provider: up, model: second, priority: 1}}
    retries: 1
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(openai_echo) as fake:
        yield fake


@pytest.fixture
def gw(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    with GatewayServer(CONFIG.format(url=upstream.url, key=KEY, master=MASTER)) as server:
        yield server


MSG = [{"role": "user", "content": "hello"}]


def test_headers_then_429_with_retry_after(gw: GatewayServer, make_client: Callable[..., openai.OpenAI]) -> None:
    client = make_client(gw.url + "/v1", KEY)
    for i in range(3):
        raw = client.chat.completions.with_raw_response.create(model="gpt", messages=MSG, max_tokens=10)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"  # the key is tighter than its team
        assert raw.headers["x-ratelimit-remaining-requests"] == str(2 - i)
        # OpenAI's one spelling of a span (Go's duration notation): `59.999s` or `1m0s`, never `60s`.
        for header in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
            reset = raw.headers[header]
            assert re.fullmatch(r"\d+ms|(?:[1-9]\d*m)?(?:0|[1-9]\d?)(?:\.\d*[1-9])?s", reset), reset
            assert not re.fullmatch(r"(?:6\d|[7-9]\d|\d{3,})(?:\.\d+)?s", reset), reset
        assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt", messages=MSG)
    error = caught.value
    assert error.code == "rate_limit_exceeded"
    assert "key 'app'" in error.message and "requests per minute" in error.message
    assert 1 <= int(error.response.headers["retry-after"]) <= 60


def test_tokens_reserved_then_reconciled(gw: GatewayServer, make_client: Callable[..., openai.OpenAI]) -> None:
    client = make_client(gw.url + "/v1", KEY)
    counter = TokenCounter()
    assert counter.preload(["cl100k_base"]) == {"cl100k_base": True}  # the shipped encoding (conftest)
    prompt, exact = counter.count_prompt("chat", {"messages": MSG}, "gpt")
    assert exact
    first = client.chat.completions.with_raw_response.create(model="gpt", messages=MSG, max_tokens=500)
    # The header reflects the reservation: prompt + max_tokens.
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 100000 - (prompt + 500)
    second = client.chat.completions.with_raw_response.create(model="gpt", messages=MSG, max_tokens=500)
    # The first request was settled with its real usage (5 prompt + 2 completion tokens of the fake).
    used = first.parse().usage
    assert used is not None
    remaining = int(second.headers["x-ratelimit-remaining-tokens"])
    assert remaining == 100000 - used.total_tokens - (prompt + 500)
    assert remaining > 100000 - 2 * (prompt + 500)


def test_request_larger_than_tpm(gw: GatewayServer, make_client: Callable[..., openai.OpenAI]) -> None:
    client = make_client(gw.url + "/v1", "sk-gw-tight-0123456789abcdef")
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt", messages=MSG)  # no max_tokens: the 4096 cap is reserved
    assert "Request too large" in caught.value.message
    assert client.chat.completions.create(model="gpt", messages=MSG, max_tokens=50).choices


def test_concurrency_released_when_the_client_leaves_mid_stream(upstream: FakeUpstream, gw: GatewayServer) -> None:
    chunks = sse_lines([{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                         "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}
                        for i in range(50)])
    upstream.handler = lambda r: Reply(chunks=chunks, chunk_delay=0.05) if r.json.get("stream") else openai_echo(r)
    headers = {"authorization": "Bearer sk-gw-one-0123456789abcdef"}
    body = {"model": "gpt", "stream": True, "messages": MSG}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", headers=headers, json=body, timeout=10) as r:
        assert r.status_code == 200
        received = r.iter_bytes()  # kept referenced: dropping the iterator would close the response
        assert next(received).startswith(b"data: ")
        busy = httpx.post(gw.url + "/v1/chat/completions", headers=headers, json={"model": "gpt", "messages": MSG})
        assert busy.status_code == 429
        assert "concurrent requests" in busy.json()["error"]["message"]
    # The client left: the stream settles in the gateway, the lease is released.
    deadline = time.monotonic() + 5
    while True:
        r2 = httpx.post(gw.url + "/v1/chat/completions", headers=headers, json={"model": "gpt", "messages": MSG})
        if r2.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r2.status_code == 200


def test_deployment_without_headroom_is_skipped(gw: GatewayServer, make_client: Callable[..., openai.OpenAI]) -> None:
    client = make_client(gw.url + "/v1", "sk-gw-free-0123456789abcdef")
    first = client.chat.completions.with_raw_response.create(model="pinned", messages=MSG)
    assert first.headers["x-gateway-deployment"] == "up/first"
    second = client.chat.completions.with_raw_response.create(model="pinned", messages=MSG)
    assert second.headers["x-gateway-deployment"] == "up/second"


def test_admin_key_lifecycle(gw: GatewayServer, make_client: Callable[..., openai.OpenAI]) -> None:
    admin = {"authorization": f"Bearer {MASTER}"}
    assert httpx.post(gw.url + "/admin/keys", json={"name": "x"}).status_code == 401
    assert httpx.post(gw.url + "/admin/keys", headers={"authorization": f"Bearer {KEY}"},
                      json={"name": "x"}).status_code == 401
    bad = httpx.post(gw.url + "/admin/keys", headers=admin, json={"name": "x", "models": ["nope"]})
    assert bad.status_code == 400
    created = httpx.post(gw.url + "/admin/keys", headers=admin,
                         json={"name": "runtime", "team": "search", "models": ["gpt"], "metadata": {"owner": "me"},
                               "limits": {"rpm": 1}})
    assert created.status_code == 201
    record = created.json()
    plain, key_id = record["key"], record["id"]
    assert plain.startswith("sk-gw-") and "key_sha256" not in record
    listed = httpx.get(gw.url + "/admin/keys", headers=admin).json()["data"]
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]
    assert hashlib.sha256(plain.encode()).hexdigest() not in str(listed)
    client = make_client(gw.url + "/v1", plain)
    assert client.chat.completions.create(model="gpt", messages=MSG).choices
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt", messages=MSG)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="pinned", messages=MSG)
    updated = httpx.patch(f"{gw.url}/admin/keys/{key_id}", headers=admin, json={"limits": {"rpm": 5}})
    assert updated.status_code == 200 and updated.json()["limits"]["rpm"] == 5
    assert client.chat.completions.create(model="gpt", messages=MSG).choices
    assert httpx.patch(f"{gw.url}/admin/keys/{key_id}", headers=admin, json={"bogus": 1}).status_code == 400
    assert httpx.delete(f"{gw.url}/admin/keys/{key_id}", headers=admin).json()["revoked"] is not None
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt", messages=MSG)
    assert httpx.get(f"{gw.url}/admin/keys/nope", headers=admin).status_code == 404


def test_settle_uses_real_usage_for_large_answers(upstream: FakeUpstream, gw: GatewayServer,
                                                  make_client: Callable[..., openai.OpenAI]) -> None:
    """Charging more than reserved: a provider that ignores max_tokens still costs its real usage."""

    def verbose(request: Recorded) -> Reply:
        body = chat_completion("x", request.json["model"], prompt_tokens=5)
        body["usage"] = {"prompt_tokens": 5, "completion_tokens": 250, "total_tokens": 255}
        return Reply(json=body)

    upstream.handler = verbose
    client = make_client(gw.url + "/v1", "sk-gw-tight-0123456789abcdef")
    assert client.chat.completions.create(model="gpt", messages=MSG, max_tokens=10).choices
    with pytest.raises(openai.RateLimitError):  # 255 charged: 255 + (prompt + 50) > 300
        client.chat.completions.create(model="gpt", messages=MSG, max_tokens=50)


NO_USAGE_CONFIG = """
auth:
  required: true
  keys: [{{name: app, key: "{key}", limits: {{tpm: 1000}}}}]
providers:
  oa: {{type: openai, base_url: "{url}/v1", api_key: k}}
models:
  gpt: {{deployments: [{{provider: oa, model: m}}], retries: 0}}
"""


def test_an_answer_without_usage_keeps_its_token_reservation() -> None:
    """A provider that reports no usage must not make TPM free: the reservation stands."""
    key = "sk-gw-no-usage-0123456789abcdef"

    def no_usage(_request: Recorded) -> Reply:
        return Reply(json={"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * 300},
                                        "finish_reason": "stop"}]})

    with FakeUpstream(no_usage) as up, GatewayServer(NO_USAGE_CONFIG.format(url=up.url, key=key)) as gw:
        codes = [httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=10,
                            json={"model": "gpt", "max_tokens": 300,
                                  "messages": [{"role": "user", "content": "hi"}]}).status_code for _ in range(6)]
    # Each call reserves ~310 tokens of the 1,000 a minute: the fourth is refused.
    assert codes == [200, 200, 200, 429, 429, 429]


def test_a_concurrency_slot_is_free_the_moment_the_answer_arrives(upstream: FakeUpstream) -> None:
    """Settle writes normally follow the answer; the next call's reserve must still see the slot free.
    Calls under max_parallel: 1 on the real Redis, each sent the instant the previous answer is
    complete, on the other of two open connections, are never refused. (On one Redis the request
    connection, one ordered connection, already puts the release before the next reserve; with redis-py's pool
    (Sentinel, Cluster) it is `settle_before_reply` that does.)"""
    from uuid import uuid4

    import redis

    probe = redis.Redis(socket_timeout=1)
    try:
        probe.ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"t-limits-{uuid4().hex[:8]}"
    config = CONFIG.format(url=upstream.url, key=KEY, master=MASTER) + \
        f'store: {{redis_url: "redis://127.0.0.1:6379/0", key_prefix: "{prefix}"}}\n'
    try:
        with GatewayServer(config) as server:
            statuses = alternate_connections(server.port, 200)
        assert statuses == [200] * 200
    finally:
        keys = list(probe.scan_iter(match=f"{prefix}:*"))
        if keys:
            probe.delete(*keys)
        probe.close()


def test_a_streams_concurrency_slot_is_free_when_its_response_completes() -> None:
    """A stream ends its answer at [DONE] and reads the provider's end afterwards, unless the call
    holds something the next call checks: under max_parallel: 1, with a provider that sends its end
    20 ms after [DONE], the response completes only once the slot is released, so streams sent the
    instant the previous response completed, on the other of two connections, are never refused."""

    def lingering(request: Recorded) -> Reply:
        events = [{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}]
        return Reply(chunks=[*sse_lines(events), b": bye\n\n"], chunk_delay=0.02)

    with FakeUpstream(lingering) as up, GatewayServer(CONFIG.format(url=up.url, key=KEY, master=MASTER)) as gw:
        statuses = alternate_connections(gw.port, 20, stream=True)
    assert statuses == [200] * 20


def alternate_connections(port: int, calls: int, stream: bool = False) -> list[int]:
    """`calls` requests, alternating between two open connections, each sent the instant the previous
    answer is complete (the other connection is already open): the tightest a client can follow up."""
    import socket

    body = orjson.dumps({"model": "gpt", "messages": MSG, "stream": stream})
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
               b"authorization: Bearer sk-gw-one-0123456789abcdef\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    statuses = []
    try:
        for i in range(calls):
            sock = sockets[i % 2]
            sock.sendall(request)
            head, _, _ = read_answer(sock)
            statuses.append(int(head.split(b" ")[1]))
    finally:
        for sock in sockets:
            sock.close()
    return statuses
