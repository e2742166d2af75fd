"""The response cache end to end: the real app under uvicorn, the official openai SDK (and httpx for
exact bytes and concurrency), a fake upstream that counts its calls, and both stores."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import httpx
import openai
import pytest
import redis

from gateway.accounting.estimate import PACK_AFTER
from tests.support.openai_fake import chat_chunks, chat_completion, last_user_text
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, free_port, metrics_show, sse_lines

ALICE, BOB, EVE = "sk-alice-0123456789abcdef", "sk-bob-0123456789abcdef", "sk-eve-0123456789abcdef"
MASTER = "sk-master-0123456789abcdef"
REAL_REDIS = "redis://127.0.0.1:6379/0"

CONFIG = """
store: {redis_url: "@REDIS@", key_prefix: "@PREFIX@", timeout: 500ms}
auth:
  master_key: @MASTER@
  keys:
    - {name: alice, team: search, key: @ALICE@}
    - {name: bob, team: search, key: @BOB@}
    - {name: eve, team: other, key: @EVE@}
providers:
  up: {type: openai, base_url: "@URL@/v1", api_key: upstream-secret}
cache: {ttl: 1h, lock_wait: 5s}
models:
  gpt: {deployments: [{provider: up, model: gpt-up}], retries: 0}
  team-gpt: {deployments: [{provider: up, model: gpt-up}], retries: 0, cache: {scope: team, ttl: 10m}}
  no-cache: {deployments: [{provider: up, model: gpt-up}], retries: 0, cache: {enabled: false}}
  keep-length: {deployments: [{provider: up, model: gpt-up}], retries: 0, cache: {cache_length_finish: true}}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make_config(url: str, redis_url: str, prefix: str) -> str:
    out = CONFIG
    for name, value in {"@REDIS@": redis_url, "@PREFIX@": prefix, "@MASTER@": MASTER, "@ALICE@": ALICE,
                        "@BOB@": BOB, "@EVE@": EVE, "@URL@": url}.items():
        out = out.replace(name, value)
    return out


class Upstream:
    """Answers like OpenAI, numbering each answer so a refreshed entry is visible; `mode` switches
    to failures."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.mode = "ok"
        self.delay = 0.0

    def __call__(self, request: Recorded) -> Reply:
        body = request.json
        n = next(self.counter)
        text = f"answer {n} to {last_user_text(body)}"
        if self.mode == "error":
            return Reply(status=500, json={"error": {"message": "boom", "type": "server_error"}})
        if self.mode == "tools" and not body.get("stream"):
            answer = chat_completion("", body["model"], finish="tool_calls")
            answer["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"id": f"call_{n}", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "cache"}'}},
                {"id": f"call_{n}b", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]}
            return Reply(json=answer)
        finish = "length" if self.mode == "length" else "stop"
        if body.get("stream"):
            if self.mode == "long":  # more gateway reads than a capture keeps unpacked (PACK_AFTER)
                text += "".join(f" w{i}" for i in range(3 * PACK_AFTER))
            chunks = chat_chunks(text, body["model"], include_usage=True)
            if finish == "length":
                chunks[-2]["choices"][0]["finish_reason"] = "length"
            lines = sse_lines(chunks)
            return Reply(chunks=lines, delay=self.delay, cut_after=len(lines) - 3 if self.mode == "cut" else None,
                         chunk_delay=0.002 if self.mode == "long" else 0.0)  # (the pause: a read per chunk)
        return Reply(json=chat_completion(text, body["model"], finish=finish), delay=self.delay)


@pytest.fixture
def behaviour() -> Upstream:
    return Upstream()


@pytest.fixture
def upstream(behaviour: Upstream) -> Iterator[FakeUpstream]:
    with FakeUpstream(behaviour) as fake:
        yield fake


@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str:
    return REAL_REDIS if request.param == "redis" else ""


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    prefix = f"t-cache-{uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(REAL_REDIS)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gw(upstream: FakeUpstream, redis_url: str, prefix: str, clock: Clock) -> Iterator[GatewayServer]:
    server = GatewayServer(make_config(upstream.url, redis_url, prefix))
    server.services.hooks.cache_clock = clock
    with server:
        yield server


MESSAGES = [{"role": "user", "content": "what is the cache"}]


def chat(make_client: Callable[..., openai.OpenAI], gw: GatewayServer, *, key: str = ALICE, model: str = "gpt",
         headers: dict[str, str] | None = None, **extra: Any) -> tuple[Any, dict[str, str]]:
    raw = make_client(gw.url + "/v1", key).chat.completions.with_raw_response.create(
        model=model, messages=extra.pop("messages", MESSAGES), extra_headers=headers, **extra)
    settled(gw)
    return raw.parse(), dict(raw.headers)


def settled(gw: GatewayServer) -> None:
    """Wait until the gateway has settled every answered call (the settle, which stores the entry
    with the clock's time, follows the answer): tests move the fake clock between calls."""
    assert "gateway_in_flight_requests 0.0" in metrics_show(gw.url, "gateway_in_flight_requests 0.0")


def stream_chat(make_client: Callable[..., openai.OpenAI], gw: GatewayServer, *, key: str = ALICE,
                model: str = "gpt", usage: bool = True, headers: dict[str, str] | None = None
                ) -> tuple[str, Any, str | None, dict[str, str]]:
    with make_client(gw.url + "/v1", key).chat.completions.with_streaming_response.create(
            model=model, messages=MESSAGES, stream=True, extra_headers=headers,
            stream_options={"include_usage": True} if usage else None) as raw:
        text, used, finish = "", None, None
        for chunk in raw.parse():
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
            if chunk.usage is not None:
                used = chunk.usage
    settled(gw)
    return text, used, finish, dict(raw.headers)


def test_miss_then_hit_serves_the_exact_stored_bytes(gw: GatewayServer, upstream: FakeUpstream) -> None:
    request = {"model": "gpt", "messages": MESSAGES, "temperature": 0.2}
    with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {ALICE}"}) as http:
        first = http.post("/v1/chat/completions", json=request)
        # Same request, other key order and whitespace, plus fields that do not change the answer.
        second = http.post("/v1/chat/completions", content=b'{ "temperature" : 0.2, "user": "u1",\n "messages": '
                           b'[{"content": "what is the cache", "role": "user"}], "model": "gpt"}',
                           headers={"content-type": "application/json"})
    assert first.status_code == second.status_code == 200
    assert first.headers["x-gateway-cache"] == "MISS" and second.headers["x-gateway-cache"] == "HIT"
    assert second.headers["age"] == "0"
    assert second.content == first.content
    assert len(upstream.requests) == 1


def test_streamed_and_non_streamed_answers_replay_each_other(gw: GatewayServer, upstream: FakeUpstream,
                                                             make_client: Callable[..., openai.OpenAI]) -> None:
    stored, headers = chat(make_client, gw)
    assert headers["x-gateway-cache"] == "MISS"
    text, used, finish, headers = stream_chat(make_client, gw)
    assert headers["x-gateway-cache"] == "HIT"
    assert text == stored.choices[0].message.content and finish == "stop"
    assert used is not None and used.model_dump() == stored.usage.model_dump()
    # A client that did not ask for usage gets none.
    _, used, _, headers = stream_chat(make_client, gw, usage=False)
    assert used is None and headers["x-gateway-cache"] == "HIT"
    assert len(upstream.requests) == 1

    # The other way round, on another alias: a stream stored, a non-streamed request served.
    text, used, finish, headers = stream_chat(make_client, gw, model="team-gpt", usage=False)
    assert headers["x-gateway-cache"] == "MISS"
    answer, headers = chat(make_client, gw, model="team-gpt")
    assert headers["x-gateway-cache"] == "HIT"
    assert answer.choices[0].message.content == text and answer.choices[0].finish_reason == finish
    assert answer.usage is not None and answer.usage.prompt_tokens == 5  # the usage the upstream reported
    again, _, _, headers = stream_chat(make_client, gw, model="team-gpt")
    assert again == text and headers["x-gateway-cache"] == "HIT"
    assert len(upstream.requests) == 2


def test_cache_control_no_cache_refreshes_no_store_skips_the_write(
        gw: GatewayServer, upstream: FakeUpstream, make_client: Callable[..., openai.OpenAI]) -> None:
    def content(headers: dict[str, str] | None = None) -> tuple[str, str]:
        answer, got = chat(make_client, gw, headers=headers)
        return answer.choices[0].message.content, got["x-gateway-cache"]

    assert content() == ("answer 1 to what is the cache", "MISS")
    assert content({"cache-control": "no-cache"}) == ("answer 2 to what is the cache", "BYPASS")
    assert content() == ("answer 2 to what is the cache", "HIT")  # refreshed by no-cache
    assert content({"cache-control": "no-store"}) == ("answer 2 to what is the cache", "HIT")
    assert content({"cache-control": "no-cache, no-store"}) == ("answer 3 to what is the cache", "BYPASS")
    assert content() == ("answer 2 to what is the cache", "HIT")  # not overwritten
    assert len(upstream.requests) == 3
    # no-store on a miss: answered, never written.
    other = [{"role": "user", "content": "something else"}]
    for expected in ("answer 4 to something else", "answer 5 to something else"):
        answer, got = chat(make_client, gw, messages=other, headers={"cache-control": "no-store"})
        assert answer.choices[0].message.content == expected and got["x-gateway-cache"] == "MISS"


def test_max_age_ttl_override_and_expiry(gw: GatewayServer, upstream: FakeUpstream, clock: Clock,
                                         make_client: Callable[..., openai.OpenAI]) -> None:
    chat(make_client, gw)
    clock.now += 100
    _, headers = chat(make_client, gw, headers={"cache-control": "max-age=300"})
    assert headers["x-gateway-cache"] == "HIT" and headers["age"] == "100"
    _, headers = chat(make_client, gw, headers={"cache-control": "max-age=50"})
    assert headers["x-gateway-cache"] == "MISS"  # too old for this client: fetched and stored afresh
    assert len(upstream.requests) == 2
    clock.now += 3599
    _, headers = chat(make_client, gw)
    assert headers["x-gateway-cache"] == "HIT" and headers["age"] == "3599"
    clock.now += 2  # past the alias ttl (1h)
    _, headers = chat(make_client, gw)
    assert headers["x-gateway-cache"] == "MISS"
    assert len(upstream.requests) == 3
    # x-gateway-cache-ttl shortens the entry's life; it cannot extend it past the alias bound (10m).
    _, headers = chat(make_client, gw, model="team-gpt", headers={"x-gateway-cache-ttl": "30s"})
    clock.now += 31
    _, headers = chat(make_client, gw, model="team-gpt")
    assert headers["x-gateway-cache"] == "MISS"
    chat(make_client, gw, model="team-gpt", headers={"x-gateway-cache-ttl": "2h", "cache-control": "no-cache"})
    clock.now += 601
    _, headers = chat(make_client, gw, model="team-gpt")
    assert headers["x-gateway-cache"] == "MISS"


def test_tenants_never_see_each_others_entries(gw: GatewayServer, upstream: FakeUpstream,
                                              make_client: Callable[..., openai.OpenAI]) -> None:
    # scope: key (the default) — every key has its own entries.
    answers = {key: chat(make_client, gw, key=key)[0].choices[0].message.content for key in (ALICE, BOB, EVE)}
    assert len(set(answers.values())) == 3
    assert chat(make_client, gw, key=BOB)[1]["x-gateway-cache"] == "HIT"
    # scope: team — alice and bob share, eve (another team) does not.
    first = chat(make_client, gw, key=ALICE, model="team-gpt")[0].choices[0].message.content
    answer, headers = chat(make_client, gw, key=BOB, model="team-gpt")
    assert headers["x-gateway-cache"] == "HIT" and answer.choices[0].message.content == first
    answer, headers = chat(make_client, gw, key=EVE, model="team-gpt")
    assert headers["x-gateway-cache"] == "MISS" and answer.choices[0].message.content != first
    assert len(upstream.requests) == 5


def test_failures_truncation_and_length_are_not_cached(gw: GatewayServer, upstream: FakeUpstream,
                                                       behaviour: Upstream,
                                                       make_client: Callable[..., openai.OpenAI]) -> None:
    behaviour.mode = "cut"
    with pytest.raises(openai.APIError):
        stream_chat(make_client, gw)
    behaviour.mode = "error"
    with pytest.raises(openai.InternalServerError):
        chat(make_client, gw)
    behaviour.mode = "length"
    assert chat(make_client, gw)[0].choices[0].finish_reason == "length"
    assert stream_chat(make_client, gw)[2] == "length"
    assert len(upstream.requests) == 4
    # Nothing was stored, and the locks were released: the next request goes straight upstream.
    behaviour.mode = "ok"
    assert chat(make_client, gw)[1]["x-gateway-cache"] == "MISS"
    assert chat(make_client, gw)[1]["x-gateway-cache"] == "HIT"
    assert len(upstream.requests) == 5
    # An alias that keeps length-truncated answers.
    behaviour.mode = "length"
    chat(make_client, gw, model="keep-length")
    assert chat(make_client, gw, model="keep-length")[1]["x-gateway-cache"] == "HIT"
    assert len(upstream.requests) == 6


async def _concurrent(urls: list[str], n: int, stream: bool = False) -> list[httpx.Response]:
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {ALICE}"}, timeout=10) as http:
        body = {"model": "gpt", "messages": MESSAGES, "stream": stream}
        return await asyncio.gather(*(http.post(f"{urls[i % len(urls)]}/v1/chat/completions", json=body)
                                      for i in range(n)))


def test_identical_concurrent_misses_make_one_upstream_call(gw: GatewayServer, upstream: FakeUpstream,
                                                            behaviour: Upstream) -> None:
    behaviour.delay = 0.3
    replies = asyncio.run(_concurrent([gw.url], 8))
    assert [r.status_code for r in replies] == [200] * 8
    assert len(upstream.requests) == 1
    assert sorted(r.headers["x-gateway-cache"] for r in replies) == ["HIT"] * 7 + ["MISS"]
    assert len({r.json()["choices"][0]["message"]["content"] for r in replies}) == 1
    # Streams too (another entry: nothing stored yet for it? the same key: stream and JSON share it).
    replies = asyncio.run(_concurrent([gw.url], 4, stream=True))
    assert all(r.headers["x-gateway-cache"] == "HIT" and r.text.endswith("data: [DONE]\n\n") for r in replies)
    assert len(upstream.requests) == 1


def test_two_gateways_sharing_redis_make_one_upstream_call(upstream: FakeUpstream, behaviour: Upstream,
                                                           prefix: str) -> None:
    behaviour.delay = 0.3
    config = make_config(upstream.url, REAL_REDIS, prefix)
    with GatewayServer(config) as one, GatewayServer(config) as two:
        replies = asyncio.run(_concurrent([one.url, two.url], 8, stream=True))
    assert [r.status_code for r in replies] == [200] * 8
    assert len(upstream.requests) == 1
    assert len({r.text for r in replies if r.headers["x-gateway-cache"] == "HIT"}) == 1


def test_store_trouble_makes_the_cache_a_pass_through(upstream: FakeUpstream, prefix: str,
                                                      make_client: Callable[..., openai.OpenAI]) -> None:
    config = make_config(upstream.url, f"redis://127.0.0.1:{free_port()}/0", prefix)
    with GatewayServer(config) as server:
        for _ in range(2):
            answer, headers = chat(make_client, server)
            assert headers["x-gateway-cache"] == "BYPASS" and answer.choices[0].message.content
        text, _, _, headers = stream_chat(make_client, server)
        assert text and headers["x-gateway-cache"] == "BYPASS"
        metrics = httpx.get(server.url + "/metrics").text
    assert len(upstream.requests) == 3
    assert 'gateway_cache_lookups_total{alias="gpt",result="error"} 3.0' in metrics


def test_aliases_without_cache_are_untouched(gw: GatewayServer, upstream: FakeUpstream,
                                             make_client: Callable[..., openai.OpenAI]) -> None:
    for _ in range(2):
        _, headers = chat(make_client, gw, model="no-cache")
        assert "x-gateway-cache" not in headers
    assert len(upstream.requests) == 2


def test_admin_purge_and_metrics(gw: GatewayServer, upstream: FakeUpstream,
                                 make_client: Callable[..., openai.OpenAI]) -> None:
    for key in (ALICE, EVE):
        chat(make_client, gw, key=key)
        chat(make_client, gw, key=key, model="team-gpt")
    with httpx.Client(base_url=gw.url) as http:
        assert http.post("/admin/cache/purge", json={}).status_code == 401
        purge = {"authorization": f"Bearer {MASTER}"}
        assert http.post("/admin/cache/purge", json={"key": "alice", "team": "x"}, headers=purge).status_code == 400
        assert http.post("/admin/cache/purge", json={"alias": "gpt", "key": "alice"}, headers=purge).json() == \
            {"purged": 1}
        assert http.post("/admin/cache/purge", json={"team": "other"}, headers=purge).json() == {"purged": 1}
        assert chat(make_client, gw, key=ALICE)[1]["x-gateway-cache"] == "MISS"
        assert chat(make_client, gw, key=EVE)[1]["x-gateway-cache"] == "HIT"
        assert chat(make_client, gw, key=ALICE, model="team-gpt")[1]["x-gateway-cache"] == "HIT"
        assert chat(make_client, gw, key=EVE, model="team-gpt")[1]["x-gateway-cache"] == "MISS"
        assert http.post("/admin/cache/purge", json={"alias": "team-gpt"}, headers=purge).json() == {"purged": 2}
        metrics = http.get("/metrics").text
    assert 'gateway_cache_lookups_total{alias="gpt",result="hit"} 1.0' in metrics
    assert 'gateway_cache_lookups_total{alias="gpt",result="miss"} 3.0' in metrics
    assert 'gateway_cache_stores_total{alias="gpt",result="stored"} 3.0' in metrics
    assert 'gateway_cache_bytes_total{alias="gpt",direction="served"}' in metrics


def test_a_long_stream_is_stored_whole(gw: GatewayServer, upstream: FakeUpstream, behaviour: Upstream,
                                       make_client: Callable[..., openai.OpenAI]) -> None:
    """A stream the cache stores is captured whole: accounting packs a long capture only when no entry
    is being written."""
    behaviour.mode = "long"
    text, used, finish, headers = stream_chat(make_client, gw)
    assert headers["x-gateway-cache"] == "MISS" and text.endswith(f" w{3 * PACK_AFTER - 1}")
    again, used_again, finish_again, headers = stream_chat(make_client, gw)
    assert headers["x-gateway-cache"] == "HIT"
    assert (again, finish_again) == (text, finish)
    assert (used_again.prompt_tokens, used_again.completion_tokens) == (used.prompt_tokens, used.completion_tokens)
    answer, headers = chat(make_client, gw)
    assert headers["x-gateway-cache"] == "HIT" and answer.choices[0].message.content == text
    assert len(upstream.requests) == 1


def test_tool_calls_survive_replay_as_a_stream(gw: GatewayServer, upstream: FakeUpstream, behaviour: Upstream,
                                               make_client: Callable[..., openai.OpenAI]) -> None:
    behaviour.mode = "tools"
    stored, _ = chat(make_client, gw)
    client = make_client(gw.url + "/v1", ALICE)
    with client.beta.chat.completions.stream(model="gpt", messages=MESSAGES,  # type: ignore[arg-type]
                                             stream_options={"include_usage": True}) as stream:
        final = stream.get_final_completion()
    assert len(upstream.requests) == 1
    replayed = final.choices[0].message
    assert [(c.id, c.function.name, c.function.arguments) for c in replayed.tool_calls or []] == \
        [(c.id, c.function.name, c.function.arguments) for c in stored.choices[0].message.tool_calls or []]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and stored.usage is not None
    assert final.usage.total_tokens == stored.usage.total_tokens
