"""The official openai SDK drives every endpoint through the real gateway (uvicorn, lifespan, real
sockets) against a fake OpenAI-compatible upstream."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from tests.support.openai_fake import openai_echo, openai_error
from tests.support.servers import (
    FakeUpstream,
    GatewayServer,
    Recorded,
    Reply,
    free_port,
    metrics_show,
    sse_lines,
)

APP_KEY = "sk-gw-app-0123456789abcdef"
LIMITED_KEY = "sk-gw-limited-0123456789abcdef"

CONFIG = """
server: {{max_body_bytes: 4096}}
auth:
  required: true
  keys:
    - {{name: app, team: search, key: "${{APP_KEY}}"}}
    - {{name: limited, key_sha256: {limited_sha}, models: [other]}}
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-secret-value}}
  dead: {{type: openai, base_url: "http://127.0.0.1:{dead_port}/v1", connect_timeout: 1s}}
models:
  gpt:
    deployments: [{{provider: up, model: gpt-4o-upstream}}]
    retries: 0
  other:
    deployments: [{{provider: up, model: other-upstream}}]
  unreachable:
    deployments: [{{provider: dead, model: x}}]
    retries: 0
  slow:
    deployments: [{{provider: up, model: slow, timeout: 300ms}}]
    retries: 0
"""


def _config(url: str) -> str:
    import hashlib

    return CONFIG.format(url=url, dead_port=free_port(), limited_sha=hashlib.sha256(LIMITED_KEY.encode()).hexdigest())


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(openai_echo) as fake:
        yield fake


@pytest.fixture
def gw(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    with GatewayServer(_config(upstream.url), env={"APP_KEY": APP_KEY}) as server:
        yield server


@pytest.fixture
def client(make_client: Callable[..., openai.OpenAI], gw: GatewayServer) -> Callable[..., openai.OpenAI]:
    """SDK clients for this gateway (the app key and /v1 unless told otherwise), closed after the test."""

    def make(key: str = APP_KEY, prefix: str = "/v1") -> openai.OpenAI:
        return make_client(gw.url + prefix, key)

    return make


def test_chat_completion_round_trip(gw: GatewayServer, upstream: FakeUpstream,
                                    client: Callable[..., openai.OpenAI]) -> None:
    raw = client().chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": "hello world"}], temperature=0.5,
        extra_body={"vendor_field": {"x": 1}})
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello world"
    assert completion.usage is not None and completion.usage.total_tokens == 8
    assert raw.headers["x-gateway-deployment"] == "up/gpt-4o-upstream"
    assert raw.headers["x-gateway-attempts"] == "1"
    assert float(raw.headers["x-gateway-overhead-ms"]) >= 0
    assert raw.headers["x-request-id"].startswith("req_")
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "gpt-4o-upstream"
    assert sent.json["temperature"] == 0.5
    assert sent.json["vendor_field"] == {"x": 1}  # unknown fields pass through
    # The upstream sees the provider's credential, never the client's gateway key.
    assert sent.headers["authorization"] == "Bearer upstream-secret-value"
    assert APP_KEY not in str(sent.headers)


def test_streaming_chat_passes_chunks_and_hides_usage_unless_asked(gw: GatewayServer, upstream: FakeUpstream,
                                                                   client: Callable[..., openai.OpenAI]) -> None:
    chunks = list(client().chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "one two three"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The gateway asked for usage itself (accounting needs it).
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}

    with_usage = list(client().chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "a b"}], stream=True,
        stream_options={"include_usage": True}))
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens == 3


def test_stream_response_headers(gw: GatewayServer) -> None:
    with httpx.stream("POST", gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {APP_KEY}",
                      "x-request-id": "my-trace-1"},
                      json={"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-request-id"] == "my-trace-1"
        assert r.headers["x-gateway-deployment"] == "up/gpt-4o-upstream"
        body = r.read()
    assert body.endswith(b"data: [DONE]\n\n")


def test_completions_and_embeddings(gw: GatewayServer, upstream: FakeUpstream,
                                    client: Callable[..., openai.OpenAI]) -> None:
    c = client()
    completion = c.completions.create(model="gpt", prompt="say hi")
    assert completion.choices[0].text == "echo: say hi"
    streamed = list(c.completions.create(model="gpt", prompt="say hi", stream=True))
    assert "".join(s.choices[0].text for s in streamed if s.choices) == "echo: say hi"
    embedding = c.embeddings.create(model="gpt", input=["a", "b"])
    assert [d.index for d in embedding.data] == [0, 1]
    assert upstream.requests[-1].path == "/v1/embeddings"
    assert upstream.requests[-1].json["model"] == "gpt-4o-upstream"


def test_paths_without_v1_prefix(gw: GatewayServer, client: Callable[..., openai.OpenAI]) -> None:
    c = client(prefix="")
    assert c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}]).choices
    assert [m.id for m in c.models.list()] == ["gpt", "other", "unreachable", "slow"]


def test_models_lists_what_the_key_may_use(gw: GatewayServer, client: Callable[..., openai.OpenAI]) -> None:
    assert [m.id for m in client(LIMITED_KEY).models.list()] == ["other"]
    assert client().models.retrieve("gpt").id == "gpt"
    with pytest.raises(openai.NotFoundError):
        client(LIMITED_KEY).models.retrieve("gpt")


def test_auth_errors(gw: GatewayServer, client: Callable[..., openai.OpenAI]) -> None:
    missing = httpx.post(gw.url + "/v1/chat/completions",
                         json={"model": "gpt", "messages": [{"role": "user", "content": "x"}]})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(key="sk-wrong-key-abcdefghijklmnop").chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "x"}])
    assert "sk-wrong-key-abcdefghijklmnop" not in str(wrong.value.body)
    with pytest.raises(openai.PermissionDeniedError):
        client(LIMITED_KEY).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])


def test_azure_style_api_key_header(gw: GatewayServer) -> None:
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"api-key": APP_KEY},
                   json={"model": "gpt", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200


def test_request_errors_are_openai_shaped(gw: GatewayServer, client: Callable[..., openai.OpenAI]) -> None:
    c = client()
    with pytest.raises(openai.NotFoundError) as unknown:
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], temperature=7)
    assert bad.value.param == "temperature"
    headers = {"authorization": f"Bearer {APP_KEY}", "content-type": "application/json"}
    for payload, code in [(b"{not json", "invalid_json"), (b"[1,2]", "invalid_body"),
                          (b'{"model": "gpt"}', "missing_required_parameter"),
                          (b'{"model": 5, "messages": [{"role":"user","content":"x"}]}', "invalid_value"),
                          (b'{"model": "gpt", "messages": [{"role":"robot","content":"x"}]}', "invalid_value")]:
        r = httpx.post(gw.url + "/v1/chat/completions", content=payload, headers=headers)
        assert r.status_code == 400, payload
        assert r.json()["error"]["code"] == code
        assert r.json()["error"]["type"] == "invalid_request_error"
    big = httpx.post(gw.url + "/v1/chat/completions", headers=headers,
                     json={"model": "gpt", "messages": [{"role": "user", "content": "x" * 5000}]})
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "request_too_large"
    assert httpx.get(gw.url + "/v1/chat/completions", headers=headers).status_code == 405
    assert httpx.get(gw.url + "/v1/nothing").json()["error"]["code"] == "unknown_url"


def test_upstream_errors_pass_through_with_their_status(gw: GatewayServer, upstream: FakeUpstream,
                                                        client: Callable[..., openai.OpenAI]) -> None:
    c = client()
    # A 429 with Retry-After opens its deployment's circuit (routing cooldowns): it goes to "other".
    cases: list[tuple[Reply, type[openai.APIStatusError], int, str]] = [
        (openai_error(400, "Invalid 'messages[0]': bad"), openai.BadRequestError, 400, "gpt"),
        (openai_error(429, "Slow down", type_="rate_limit_error", headers={"retry-after": "1"}),
         openai.RateLimitError, 429, "other"),
        (openai_error(500, "boom", type_="server_error"), openai.InternalServerError, 500, "gpt"),
        (Reply(status=503, body=b"<html>bad gateway</html>", content_type="text/html"),
         openai.InternalServerError, 503, "gpt"),
    ]
    for reply, error_class, status, model in cases:
        upstream.handler = lambda _r, reply=reply: reply
        with pytest.raises(error_class) as caught:
            c.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == status
    upstream.handler = lambda _r: openai_error(400, "too long", code="context_length_exceeded")
    with pytest.raises(openai.BadRequestError) as context:
        c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert context.value.code == "context_length_exceeded"


def test_a_provider_refusing_the_gateways_key_is_a_502(gw: GatewayServer, upstream: FakeUpstream,
                                                       client: Callable[..., openai.OpenAI]) -> None:
    """Not the client's key problem: a 502 naming the provider, without the provider's text (which
    quotes part of the provider key), so the SDK does not raise AuthenticationError for a good key."""
    upstream.handler = lambda _r: openai_error(401, "Incorrect API key provided: sk-proj-****wxyz.",
                                               code="invalid_api_key")
    with pytest.raises(openai.InternalServerError) as refused:
        client().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert (refused.value.status_code, refused.value.code) == (502, "upstream_auth_error")
    assert "sk-proj" not in str(refused.value.body) and "'up'" in refused.value.message


def test_connect_error_and_timeout(gw: GatewayServer, upstream: FakeUpstream,
                                   client: Callable[..., openai.OpenAI]) -> None:
    c = client()
    with pytest.raises(openai.APIStatusError) as unreachable:
        c.chat.completions.create(model="unreachable", messages=[{"role": "user", "content": "x"}])
    assert unreachable.value.status_code == 502
    assert "127.0.0.1" not in unreachable.value.message
    upstream.handler = lambda r: Reply(json={}, delay=2.0)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as slow:
        c.chat.completions.create(model="slow", messages=[{"role": "user", "content": "x"}])
    assert slow.value.status_code == 504
    assert time.monotonic() - started < 1.5


def test_failure_after_first_byte_ends_stream_with_error_event(gw: GatewayServer, upstream: FakeUpstream,
                                                               client: Callable[..., openai.OpenAI]) -> None:
    def cut(request: Recorded) -> Reply:
        events = [{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in "abc"]
        return Reply(chunks=sse_lines(events), cut_after=2)

    upstream.handler = cut
    stream = client().chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["a", "b"]
    raw = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {APP_KEY}"},
                     json={"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert b'"error"' in raw.content
    assert not raw.content.rstrip().endswith(b"[DONE]")


@pytest.mark.parametrize("chunk_delay", [0.0, 0.05], ids=["arrives-whole", "arrives-in-pieces"])
def test_a_stream_ends_at_done_without_waiting_for_the_provider_to_close(gw: GatewayServer, upstream: FakeUpstream,
                                                                          chunk_delay: float) -> None:
    """[DONE] ends the client's answer at once; the provider's slow end (here a trailing comment held
    back) is read afterwards, also once the client has gone (its connection is not dropped), and the
    call is settled with its usage."""
    release = threading.Event()

    def slow_end(request: Recorded) -> Reply:
        events = [{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in "ab"]
        events.append({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
        return Reply(chunks=[*sse_lines(events), b": the provider lingers\n\n"], hold_last=release,
                     chunk_delay=chunk_delay)

    upstream.handler = slow_end
    try:
        # The upstream holds its last chunk until `release`: an answer that waited for it would
        # time out here.
        raw = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {APP_KEY}"},
                         json={"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                         timeout=5)
        assert raw.status_code == 200
        assert raw.content.endswith(b"data: [DONE]\n\n")
        assert b"lingers" not in raw.content and b'"usage"' not in raw.content
        line = 'gateway_tokens_total{alias="gpt",deployment="up/gpt-4o-upstream",direction="completion"} 2.0'
        assert line not in metrics_show(gw.url, line, seconds=0.3)  # settled only once the provider ends
    finally:
        release.set()
    assert line in metrics_show(gw.url, line)
    assert upstream.disconnects == 0  # read to its end, not cut off


def test_a_provider_that_never_ends_after_done_is_cut_off(gw: GatewayServer, upstream: FakeUpstream,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's end is waited for at most DRAIN_SECONDS after [DONE]: then its connection is
    dropped and the call settles with the usage it reported."""
    import gateway.endpoints.asgi

    monkeypatch.setattr(gateway.endpoints.asgi, "DRAIN_SECONDS", 0.3)
    release = threading.Event()

    def never_ends(request: Recorded) -> Reply:
        events = [{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                   "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}]
        return Reply(chunks=[*sse_lines(events), b": still here\n\n"], hold_last=release)

    upstream.handler = never_ends
    try:
        raw = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {APP_KEY}"},
                         json={"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                         timeout=5)
        assert raw.content.endswith(b"data: [DONE]\n\n")
        line = 'gateway_tokens_total{alias="gpt",deployment="up/gpt-4o-upstream",direction="completion"} 4.0'
        assert line in metrics_show(gw.url, line)  # settled while the provider still holds its end
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while upstream.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.disconnects == 1


def test_client_disconnect_cancels_the_upstream_stream(gw: GatewayServer, upstream: FakeUpstream) -> None:
    def slow_stream(request: Recorded) -> Reply:
        events = [{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": str(i)}, "finish_reason": None}]} for i in range(200)]
        return Reply(chunks=sse_lines(events), chunk_delay=0.05)

    upstream.handler = slow_stream
    with httpx.stream("POST", gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {APP_KEY}"},
                      json={"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
        first = next(r.iter_raw())
        assert first.startswith(b"data: ")
    deadline = time.monotonic() + 3
    while upstream.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.disconnects == 1  # well before the 10 s the full stream would take
