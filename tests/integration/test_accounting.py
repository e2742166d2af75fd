"""Accounting end to end: the real app under uvicorn, the official openai SDK, a fake OpenAI upstream,
and (for shared state) the real Redis at 6379 under a unique key prefix."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.accounting.estimate import PACK_AFTER
from gateway.cli import main as cli_main
from gateway.tokens import TokenCounter
from tests.support.openai_fake import chat_chunks, chat_completion, last_user_text, openai_error
from tests.support.redis_topologies import Servers, cli, wait_for
from tests.support.scratch_redis import scratch_prefix
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, metrics_show, sse_lines

REDIS_URL = "redis://127.0.0.1:6379/0"
MASTER = "sk-master-0123456789abcdef"
KEYS = {"app": "sk-gw-app-0123456789abcdef", "other": "sk-gw-other-0123456789abcdef",
        "solo": "sk-gw-solo-0123456789abcdef", "capped": "sk-gw-capped-0123456789abcdef"}

# Spend and usage file a key under its identity (a prefix of its SHA-256), not its name.
APP_ID = hashlib.sha256(KEYS["app"].encode()).hexdigest()[:16]

CONFIG = """
store: {{redis_url: "{redis_url}", key_prefix: "{prefix}", timeout: 2s{store_extra}}}
auth:
  required: true
  master_key: {master}
  keys:
    - {{name: app, team: search, key: {app}}}
    - {{name: other, team: search, key: {other}}}
    - {{name: solo, key: {solo}}}
    - {{name: capped, key: {capped}, budget: {{usd: 0.001, period: day}}}}
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-secret}}
models:
  gpt:
    deployments: [{{provider: up, model: gpt-up, price: {{input: 2.5, output: 10, cached_input: 1.25}}}}]
    retries: 0
    cooldown: {{failures: 1000, min_calls: 1000}}  # cut streams are failures; the tests want no circuit breaker
  fb:
    deployments: [{{provider: up, model: failing, price: {{input: 100, output: 100}}}}]
    fallbacks: [gpt]
    retries: 0
  free:
    deployments: [{{provider: up, model: unpriced}}]
    retries: 0
  memo:
    deployments: [{{provider: up, model: gpt-up, name: memo-up, price: {{input: 2.5, output: 10, cached_input: 1.25}}}}]
    retries: 0
    cache: {{ttl: 1h, scope: team}}
  hedged:
    strategy: priority
    deployments:
      - {{provider: up, model: sleepy, priority: 0, price: {{input: 2.5, output: 10}}}}
      - {{provider: up, model: gpt-up, name: quick, priority: 1, price: {{input: 1, output: 1}}}}
    retries: 0
    hedge: {{enabled: true, after: 50ms}}
accounting: {{prices_file: /nonexistent/prices.yaml, reserve_completion_tokens: 2}}
"""

PROMPT_TOKENS = 9
CACHED_TOKENS = 4


def upstream_handler(request: Recorded) -> Reply:
    body = request.json
    model = body["model"]
    if model == "failing":
        return openai_error(500, "boom", type_="server_error")
    text = "echo: " + last_user_text(body)
    if model == "sleepy":
        return Reply(json=chat_completion(text, model, prompt_tokens=PROMPT_TOKENS), delay=2.0)
    cached = CACHED_TOKENS if "cached" in text else 0
    if body.get("stream"):
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        events = chat_chunks(text, model, include_usage=include, prompt_tokens=PROMPT_TOKENS)
        if include and cached:
            events[-1]["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
        if "slow" in text:
            return Reply(chunks=sse_lines(events), chunk_delay=0.02)
        if "cut late" in text:  # past the pieces a capture keeps unpacked, one gateway read each (unbatched
            # by the pause: sent at once they arrive in a few reads, and nothing would be packed)
            return Reply(chunks=sse_lines(events), cut_after=3 * PACK_AFTER, chunk_delay=0.002)
        if "cut" in text:
            return Reply(chunks=sse_lines(events), cut_after=3)
        return Reply(chunks=sse_lines(events))
    answer = chat_completion(text, model, prompt_tokens=PROMPT_TOKENS, cached=cached)
    if "no usage" in text:
        del answer["usage"]
    return Reply(json=answer)


def config(url: str, *, redis_url: str = "", prefix: str = "gw", store_extra: str = "") -> str:
    return CONFIG.format(url=url, redis_url=redis_url, prefix=prefix, master=MASTER, store_extra=store_extra, **KEYS)


def expected_micro(prompt: int, completion: int, cached: int = 0) -> int:
    pico = (prompt - cached) * 2_500_000 + cached * 1_250_000 + completion * 10_000_000
    return (pico + 500_000) // 1_000_000


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(upstream_handler) as fake:
        yield fake


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    with scratch_prefix("accounting") as prefix:
        yield prefix


@pytest.fixture
def gw(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    with GatewayServer(config(upstream.url)) as server:
        yield server


def sdk(make_client: Any, gw: GatewayServer, key: str = "app") -> openai.OpenAI:
    client: openai.OpenAI = make_client(gw.url + "/v1", api_key=KEYS[key])
    return client


def admin(gw: GatewayServer, path: str) -> Any:
    response = httpx.get(gw.url + path, headers={"authorization": f"Bearer {MASTER}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def usage_records(gw: GatewayServer, expected: int) -> list[dict[str, Any]]:
    """The usage log, once it holds `expected` records (streams settle just after the client is done)."""
    deadline = time.monotonic() + 10
    while True:
        records: list[dict[str, Any]] = admin(gw, "/admin/usage?since=0&limit=10000")["records"]
        if len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


def test_non_streamed_cost_header(gw: GatewayServer, make_client: Any) -> None:
    raw = sdk(make_client, gw).chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": "hello world"}])
    usage = raw.parse().usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (9, 3)
    # 9 x $2.50/M + 3 x $10/M = 52.5 µUSD → 53
    assert raw.headers["x-gateway-cost-usd"] == "0.000053"
    cached = sdk(make_client, gw).chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": "cached please"}])
    # 5 x 2.50 + 4 x 1.25 + 3 x 10 = 12.5 + 5 + 30 = 47.5 → 48
    assert cached.headers["x-gateway-cost-usd"] == "0.000048"
    unpriced = sdk(make_client, gw).chat.completions.with_raw_response.create(
        model="free", messages=[{"role": "user", "content": "x"}])
    assert unpriced.headers["x-gateway-cost-usd"] == "unknown"
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'gateway_unpriced_calls_total{alias="free",deployment="up/unpriced"} 1.0' in metrics
    assert 'gateway_cost_usd_total{alias="gpt",deployment="up/gpt-up"} 0.000101' in metrics
    assert 'gateway_tokens_total{alias="gpt",deployment="up/gpt-up",direction="cached"} 4.0' in metrics


def test_stream_usage_chunk_carries_the_cost(gw: GatewayServer, make_client: Any) -> None:
    chunks = list(sdk(make_client, gw).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "one two"}], stream=True,
        stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (9, 3)
    assert usage.model_extra is not None and usage.model_extra["cost"] == pytest.approx(53e-6)
    plain = list(sdk(make_client, gw).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "one two"}], stream=True))
    assert all(c.usage is None for c in plain)
    records = usage_records(gw, 2)
    assert [r["cost_micro_usd"] for r in records] == [53, 53]
    assert not any(r["estimated"] for r in records)


def test_cancelled_stream_is_billed_for_what_it_consumed(gw: GatewayServer, upstream: FakeUpstream) -> None:
    words = " ".join(f"w{i}" for i in range(150))
    received = b""
    with httpx.stream("POST", gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEYS['app']}"},
                      json={"model": "gpt", "stream": True, "messages": [{"role": "user", "content": f"slow {words}"}]},
                      timeout=10) as r:
        for part in r.iter_raw():
            received += part
            if received.count(b"data: ") >= 6:
                break
    (record,) = usage_records(gw, 1)
    assert record["estimated"] is True
    assert record["status"] == 200 and record["stream"] is True
    # The client got at least 5 content chunks; the provider was stopped long before its 153 words.
    assert 5 <= record["completion_tokens"] < 100
    assert record["prompt_tokens"] > 0  # counted from the request with the tokenizer
    assert record["cost_micro_usd"] == expected_micro(record["prompt_tokens"], record["completion_tokens"])
    # The gateway dropped the upstream connection before it settled; the fake notices on its own thread.
    wait_for(lambda: upstream.disconnects == 1, "the upstream to see its connection dropped", timeout=5)


@pytest.mark.parametrize(("path", "body", "text_of"), [
    ("/v1/messages", {"max_tokens": 500},
     lambda e: e["delta"].get("text", "") if e.get("type") == "content_block_delta" else ""),
    ("/v1/responses", {"store": False},
     lambda e: e["delta"] if e.get("type") == "response.output_text.delta" else ""),
], ids=["messages", "responses"])
def test_a_cancelled_stream_of_another_api_is_billed_for_the_text_it_delivered(
        gw: GatewayServer, path: str, body: dict[str, Any], text_of: Any) -> None:
    """What a stream captures is in its client's API; the estimate reads that API's events."""
    words = " ".join(f"w{i}" for i in range(150))
    content = f"slow {words}"
    request = {"model": "gpt", "stream": True, **body,
               **({"input": content} if path == "/v1/responses" else
                  {"messages": [{"role": "user", "content": content}]})}
    received, buffer = [], b""
    with httpx.stream("POST", gw.url + path, headers={"authorization": f"Bearer {KEYS['app']}"},
                      json=request, timeout=10) as r:
        assert r.status_code == 200
        for part in r.iter_raw():
            buffer += part
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                data = next((line[5:] for line in event.split(b"\n") if line.startswith(b"data:")), None)
                if data:
                    received.append(text_of(json.loads(data)))
            if sum(1 for t in received if t) >= 8:
                break
    (record,) = usage_records(gw, 1)
    assert record["estimated"] is True
    counter = TokenCounter()
    counter.preload()
    # At least the text the client read; the gateway may have sent a little more before it saw the close.
    assert record["completion_tokens"] >= counter.count_text("".join(received), "gpt-4o")[0] >= 8


def test_an_answer_without_usage_carries_the_cost_it_is_recorded_with(gw: GatewayServer, make_client: Any) -> None:
    """The cost header is worked out before the answer goes out, the record after it: the same
    estimated usage and cost in both, and the estimate counted once."""
    raw = sdk(make_client, gw).chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": "no usage here"}])
    (record,) = usage_records(gw, 1)
    assert record["estimated"] is True and record["completion_tokens"] > 0
    assert record["cost_micro_usd"] == expected_micro(record["prompt_tokens"], record["completion_tokens"])
    assert raw.headers["x-gateway-cost-usd"] == f"{record['cost_micro_usd'] / 1_000_000:.6f}"
    line = 'gateway_estimated_usage_calls_total{alias="gpt"} 1.0'
    assert line in metrics_show(gw.url, line)


def test_cut_stream_is_billed_as_estimated(gw: GatewayServer, make_client: Any) -> None:
    stream = sdk(make_client, gw).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "cut here please"}], stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    (record,) = usage_records(gw, 1)
    assert record["estimated"] is True and record["status"] == 502
    # role chunk, "echo:", " cut" arrived before the cut: "echo: cut" is 3 tokens in cl100k
    assert record["completion_tokens"] == 3
    assert record["cost_micro_usd"] == expected_micro(record["prompt_tokens"], 3)


def test_a_long_cut_stream_is_billed_for_every_token_it_delivered(gw: GatewayServer, make_client: Any) -> None:
    """A long stream's capture is packed as it goes; the estimate still counts all it delivered."""
    words = " ".join(f"w{i}" for i in range(4 * PACK_AFTER))
    stream = sdk(make_client, gw).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": f"cut late {words}"}], stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    (record,) = usage_records(gw, 1)
    assert record["estimated"] is True and record["status"] == 502
    counter = TokenCounter()
    counter.preload()
    assert record["completion_tokens"] == counter.count_text("".join(received), "gpt-4o")[0]
    assert record["completion_tokens"] > 2 * PACK_AFTER


def test_budget_is_shared_by_two_replicas(upstream: FakeUpstream, redis_prefix: str, make_client: Any) -> None:
    text = config(upstream.url, redis_url=REDIS_URL, prefix=redis_prefix)
    with GatewayServer(text) as a, GatewayServer(text) as b:
        clients = [sdk(make_client, a, "capped"), sdk(make_client, b, "capped")]
        ok = 0
        refused: list[openai.RateLimitError] = []
        for i in range(40):
            try:
                clients[i % 2].chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi there"}])
                ok += 1
            except openai.RateLimitError as exc:
                refused.append(exc)
        # each call costs 53 µUSD against a $0.001 budget; its reservation (tokenizer estimate of the
        # prompt + 2 completion tokens) is a little lower, so the last admitted call may overshoot
        spent = ok * 53
        assert 1000 <= spent < 1000 + 53
        assert len(refused) == 40 - ok and ok == 19
        assert refused[0].code == "insufficient_quota"
        assert refused[0].body is not None and refused[0].body["type"] == "insufficient_quota"  # type: ignore[index]
        budgets = admin(a, "/admin/budgets")["budgets"]
        assert budgets == [{"scope": "key", "name": "capped", "period": "day", "limit_usd": "0.001000",
                            "used_usd": f"0.{spent:06d}", "remaining_usd": "0.000000",
                            "resets_at": budgets[0]["resets_at"]}]
        other = sdk(make_client, b, "solo").chat.completions.create(model="gpt", messages=[{"role": "user",
                                                                                       "content": "x"}])
        assert other.choices  # other keys are not affected


def test_mixed_traffic_spend_equals_the_usage_log(upstream: FakeUpstream, redis_prefix: str, make_client: Any,
                                                  tmp_path: Path) -> None:
    with GatewayServer(config(upstream.url, redis_url=REDIS_URL, prefix=redis_prefix)) as gw:
        clients = {name: sdk(make_client, gw, name) for name in ("app", "other", "solo")}
        calls = 0
        for i in range(240):
            client = clients[("app", "other", "solo")[i % 3]].with_options(
                default_headers={"x-request-id": f"call-{i}"})
            alias = ("gpt", "gpt", "fb", "free")[i % 4]
            text = f"call {i} " + ("cached " if i % 5 == 0 else "") + "x " * (i % 7)
            kind = i % 6
            messages: Any = [{"role": "user", "content": text}]
            calls += 1
            if kind in (0, 1):
                client.chat.completions.create(model=alias, messages=messages)
            elif kind in (2, 3):
                list(client.chat.completions.create(model=alias, messages=messages, stream=True,
                                                    stream_options={"include_usage": kind == 2}))
            elif kind == 4 and i % 24 == 4:  # a cut stream
                with pytest.raises(openai.APIError):
                    list(client.chat.completions.create(model=alias, messages=[{"role": "user",
                                                                                "content": "cut " + text}],
                                                        stream=True))
            else:  # a stream the client abandons after its first chunk
                with client.chat.completions.create(model=alias, messages=[{"role": "user",
                                                                           "content": "slow " + text * 5}],
                                                    stream=True) as stream:
                    next(iter(stream))
        for i in range(30):  # the response cache: 3 distinct questions asked 10 times by a team's two keys
            client = clients[("app", "other")[i % 2]].with_options(default_headers={"x-request-id": f"call-{calls}"})
            question: Any = [{"role": "user", "content": f"memo {i % 3}"}]
            calls += 1
            if i % 2:
                list(client.chat.completions.create(model="memo", messages=question, stream=True))
            else:
                raw = client.chat.completions.with_raw_response.create(model="memo", messages=question)
                assert raw.headers["x-gateway-cost-usd"] == ("0.000000" if raw.headers.get("x-gateway-cache") == "HIT"
                                                            else "0.000053")
        records = usage_records(gw, calls)
        hits = [r for r in records if r["cache_hit"]]
        assert len(hits) >= 20 and all(r["cost_micro_usd"] == 0 and r["saved_micro_usd"] == 53 for r in hits)
        missing = sorted(set(range(calls)) - {int(r["request_id"].split("-")[1]) for r in records})
        assert not missing, [(i, i % 4, i % 6) for i in missing]
        assert len(records) == calls
        assert {r["alias"] for r in records} == {"gpt", "fb", "free", "memo"}
        assert any(r["estimated"] for r in records) and any(r["deployment"] == "up/gpt-up" and r["alias"] == "fb"
                                                             for r in records)
        yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
        for by, name_of in (("key", lambda r: r["key_id"]), ("team", lambda r: r["team"]),
                            ("alias", lambda r: r["alias"]), ("deployment", lambda r: r["deployment"])):
            spend = admin(gw, f"/admin/spend?by={by}&since={yesterday}")["spend"]
            cost: Counter[str] = Counter()
            requests: Counter[str] = Counter()
            unpriced: Counter[str] = Counter()
            tokens: Counter[str] = Counter()
            saved: Counter[str] = Counter()
            hit_count: Counter[str] = Counter()
            for r in records:
                who = name_of(r)
                if not who:
                    continue
                requests[who] += not r["hedge"]
                saved[who] += r["saved_micro_usd"]
                hit_count[who] += int(r["cache_hit"])
                tokens[who] += r["prompt_tokens"] + r["completion_tokens"]
                if r["cost_micro_usd"] == "unknown":
                    unpriced[who] += 1
                else:
                    cost[who] += r["cost_micro_usd"]
            assert set(spend) == set(requests), by
            for who, entry in spend.items():
                assert entry["cost_micro_usd"] == cost[who], (by, who)
                assert entry["requests"] == requests[who], (by, who)
                assert entry["unpriced"] == unpriced[who], (by, who)
                assert entry["saved_micro_usd"] == saved[who], (by, who)
                assert entry.get("cache_hits", 0) == hit_count[who], (by, who)
                assert entry.get("prompt_tokens", 0) + entry.get("completion_tokens", 0) == tokens[who], (by, who)
        assert admin(gw, f"/admin/spend?by=team&since={yesterday}")["spend"].keys() == {"search"}
        out = tmp_path / "usage.csv"
        assert cli_main(["usage", "export", "--since", "0", "--format", "csv", "--redis-url", REDIS_URL,
                         "--key-prefix", redis_prefix, "-o", str(out)]) == 0
        lines = out.read_text().splitlines()
        assert lines[0].startswith("ts,request_id,key,team,alias")
        assert len(lines) == calls + 1


def test_admin_api_needs_the_master_key(gw: GatewayServer) -> None:
    for path in ("/admin/spend", "/admin/budgets", "/admin/usage"):
        assert httpx.get(gw.url + path, headers={"authorization": f"Bearer {KEYS['app']}"}).status_code == 401
    bad = httpx.get(gw.url + "/admin/spend?by=nope", headers={"authorization": f"Bearer {MASTER}"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_query"


def test_records_written_while_redis_was_down_are_retried(upstream: FakeUpstream, make_client: Any,
                                                           tmp_path: Path) -> None:
    """Our own redis-server on a free port (the shared one is never touched): down during five calls,
    which still succeed (fail open), then up: the next settle carries the five queued records."""
    from tests.support.servers import free_port

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    servers = Servers(tmp_path)
    with GatewayServer(config(upstream.url, redis_url=url, prefix="t-accounting-down")) as gw:
        client = sdk(make_client, gw)
        for _ in range(5):
            raw = client.chat.completions.with_raw_response.create(model="gpt", messages=[{"role": "user",
                                                                                          "content": "hi"}])
            assert raw.headers["x-gateway-cost-usd"] == "0.000043"  # 9 x 2.50 + 2 x 10 = 42.5 -> 43
        assert "gateway_accounting_retry_queue 5.0" in metrics_show(gw.url, "gateway_accounting_retry_queue 5.0")
        try:
            servers.start(port)
            client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
            records = usage_records(gw, 6)
            assert len(records) == 6 and sum(r["cost_micro_usd"] for r in records) == 6 * 43
            spend = admin(gw, "/admin/spend?by=key&period=day")["spend"][APP_ID]
            assert (spend["requests"], spend["cost_micro_usd"]) == (6, 6 * 43)
            assert "gateway_accounting_retry_queue 0.0" in metrics_show(gw.url, "gateway_accounting_retry_queue 0.0")
        finally:
            servers.stop_all()


def test_replica_acks_hold_records_until_a_replica_confirms_them_and_apply_each_once(
        upstream: FakeUpstream, make_client: Any, tmp_path: Path) -> None:
    """`store.replica_acks: 1` on a master whose replica is not there yet: the calls succeed, their
    writes reach the master but stay queued (no replica confirmed them) and ride along with every later
    settle; once a replica has synced, a later settle is confirmed. Every write was sent several
    times, and each was applied once."""
    from tests.support.servers import free_port

    master, replica = free_port(), free_port()
    servers = Servers(tmp_path)
    no_sync_delay = ("--repl-diskless-sync-delay", "0")
    servers.start(master, *no_sync_delay)
    try:
        extra = ", replica_acks: 1"
        with GatewayServer(config(upstream.url, redis_url=f"redis://127.0.0.1:{master}/0", prefix="t-acks",
                                  store_extra=extra)) as gw:
            client = sdk(make_client, gw)
            for _ in range(3):
                client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
            assert "gateway_accounting_retry_queue 3.0" in metrics_show(gw.url, "gateway_accounting_retry_queue 3.0")
            servers.start(replica, *no_sync_delay, "--replicaof", "127.0.0.1", str(master))
            wait_for(lambda: "master_link_status:up" in cli(replica, "info", "replication"), "the replica to sync")
            # The first WAIT after the sync may still time out on a busy machine (the replica's
            # acknowledgement is late): the queue then rides along with the next settle.
            calls = 3
            for _ in range(10):
                client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
                calls += 1
                if "gateway_accounting_retry_queue 0.0" in metrics_show(gw.url, "gateway_accounting_retry_queue 0.0",
                                                                          seconds=1):
                    break
            assert "gateway_accounting_retry_queue 0.0" in metrics_show(gw.url, "gateway_accounting_retry_queue 0.0")
            records = usage_records(gw, calls)
            assert len(records) == calls and len({r["request_id"] for r in records}) == calls
            spend = admin(gw, "/admin/spend?by=key&period=day")["spend"][APP_ID]
            assert (spend["requests"], spend["cost_micro_usd"]) == (calls, calls * 43)
    finally:
        servers.stop_all()


def test_reload_with_a_broken_price_file_keeps_the_running_config(gw: GatewayServer, upstream: FakeUpstream,
                                                                   tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("openai:\n  gpt-x: {input: 1}\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(config(upstream.url).replace("/nonexistent/prices.yaml", str(prices)))
    gw.services.config_path = str(path)
    before = gw.services.current().digest
    answer = httpx.post(gw.url + "/admin/config/reload", headers={"authorization": f"Bearer {MASTER}"})
    assert answer.status_code == 422
    assert any("accounting.prices_file" in p and "gpt-x" in p for p in answer.json()["problems"])
    assert gw.services.current().digest == before


def test_a_hedged_call_is_billed_for_both_attempts(gw: GatewayServer, make_client: Any) -> None:
    raw = sdk(make_client, gw).chat.completions.with_raw_response.create(
        model="hedged", messages=[{"role": "user", "content": "hello world"}])
    assert raw.headers["x-gateway-deployment"] == "quick"
    assert raw.headers["x-gateway-cost-usd"] == "0.000012"  # 9 x 1 + 3 x 1: the answer's own cost
    winner, loser = usage_records(gw, 2)
    assert (winner["deployment"], winner["hedge"], loser["deployment"], loser["hedge"]) == \
        ("quick", False, "up/sleepy", True)
    assert loser["status"] == 499 and loser["estimated"] and loser["completion_tokens"] == 0
    assert loser["cost_micro_usd"] == expected_micro(loser["prompt_tokens"], 0)
    spend = admin(gw, "/admin/spend?by=key&period=day")["spend"][APP_ID]
    assert (spend["requests"], spend["hedges"]) == (1, 1)
    assert spend["cost_micro_usd"] == 12 + loser["cost_micro_usd"]
