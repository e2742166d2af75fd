"""Routing end to end: the real app under uvicorn, the official openai SDK, fake upstreams with
scripted latency and failures; an injected clock (cooldowns, decay) and seeded randomness."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import httpx
import openai
import pytest
import yaml

from tests.support.openai_fake import openai_echo, openai_error
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, free_port

MSG: Any = [{"role": "user", "content": "hello"}]


class FakeClock:
    """Wall-clock seconds the routing layer reads; tests move it. Its sleep advances it at once."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Script:
    """An OpenAI-compatible upstream whose latency and failures the test changes as it goes."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.first_chunk_delay = 0.0
        self.cut_after: int | None = None
        self.fail: Reply | None = None

    def __call__(self, request: Recorded) -> Reply:
        if self.fail is not None:
            return self.fail
        reply = openai_echo(request)
        reply.delay, reply.first_chunk_delay, reply.cut_after = self.delay, self.first_chunk_delay, self.cut_after
        return reply


@pytest.fixture
def ups() -> Iterator[dict[str, tuple[FakeUpstream, Script]]]:
    with contextlib.ExitStack() as stack:
        out = {}
        for name in ("a", "b", "c"):
            script = Script()
            out[name] = (stack.enter_context(FakeUpstream(script)), script)
        yield out


def providers(ups: dict[str, tuple[FakeUpstream, Script]]) -> dict[str, Any]:
    out: dict[str, Any] = {name: {"type": "openai", "base_url": f"{up.url}/v1"} for name, (up, _) in ups.items()}
    out["dead"] = {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "connect_timeout": "1s"}
    return out


@contextlib.contextmanager
def routed(models: dict[str, Any], ups: dict[str, tuple[FakeUpstream, Script]], clock: FakeClock,
           store: dict[str, Any] | None = None, seed: int = 1,
           accounting: dict[str, Any] | None = None) -> Iterator[GatewayServer]:
    config = {"auth": {"required": False}, "providers": providers(ups), "models": models}
    if store:
        config["store"] = store
    if accounting:
        config["accounting"] = accounting
    server = GatewayServer(yaml.safe_dump(config))
    hooks = server.services.hooks
    hooks.routing_clock, hooks.routing_rng, hooks.routing_sleep = clock, random.Random(seed), clock.sleep
    with server:
        yield server


def n(ups: dict[str, tuple[FakeUpstream, Script]], name: str) -> int:
    return len(ups[name][0].requests)


def text(chunks: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def ask(sdk: openai.OpenAI, model: str) -> Any:
    return sdk.chat.completions.with_raw_response.create(model=model, messages=MSG)


def test_weights_converge_to_their_ratio(ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    models = {"w": {"deployments": [{"provider": "a", "model": "m", "weight": 3},
                                    {"provider": "b", "model": "m", "weight": 1}]}}
    with routed(models, ups, FakeClock()) as gw:
        sdk = make_client(gw.url + "/v1")
        for _ in range(200):
            ask(sdk, "w")
    assert n(ups, "a") + n(ups, "b") == 200
    assert 0.65 <= n(ups, "a") / 200 <= 0.85


def test_latency_moves_away_from_a_slow_deployment_and_back(ups: Any,
                                                            make_client: Callable[..., openai.OpenAI]) -> None:
    models = {"fast": {"strategy": "latency", "deployments": [{"provider": "a", "model": "m"},
                                                              {"provider": "b", "model": "m"}]}}
    clock = FakeClock()
    with routed(models, ups, clock) as gw:
        sdk = make_client(gw.url + "/v1")

        def served(count: int) -> int:
            before = n(ups, "a")
            for _ in range(count):
                clock.advance(1.0)
                ask(sdk, "fast")
            return n(ups, "a") - before

        served(10)
        assert n(ups, "a") >= 1 and n(ups, "b") >= 1  # both explored
        ups["a"][1].delay = 0.25  # a becomes slow: at most one request finds out
        assert served(20) <= 1
        ups["a"][1].delay = 0.0  # a recovers; its old sample decays
        clock.advance(120.0)
        assert served(10) >= 1  # tried again within a bounded number of requests
        stats = gw.services.routing_stats
        row = stats.get("a/m") if stats is not None else None
        # its slow sample (0.125 s per output token) is forgotten: it competes on equal terms again
        assert row is not None and row["lat"] < 0.05


FALLBACK_MODELS: dict[str, Any] = {
    "primary": {"deployments": [{"provider": "a", "model": "m"}], "retries": 0, "fallbacks": ["backup"],
                "context_window_fallbacks": ["large"], "cooldown": {"failures": 1000, "min_calls": 1000},
                "ttft_timeout": "300ms"},
    "backup": {"deployments": [{"provider": "b", "model": "m"}]},
    "large": {"deployments": [{"provider": "c", "model": "m"}]},
    "gone": {"deployments": [{"provider": "dead", "model": "x"}], "retries": 0, "fallbacks": ["backup"]},
    "slowpoke": {"deployments": [{"provider": "a", "model": "m", "timeout": "300ms"}], "retries": 0,
                 "fallbacks": ["backup"], "cooldown": {"failures": 1000, "min_calls": 1000}},
}

FALLS_BACK = [
    openai_error(408, "timeout"), openai_error(409, "conflict"),
    openai_error(429, "slow down", type_="rate_limit_error"),
    openai_error(500, "boom", type_="server_error"), openai_error(502, "bad gateway"),
    openai_error(503, "unavailable"), Reply(status=529, json={"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}}),
    Reply(status=200, body=b"not json"),
    # The provider refusing the gateway's own credentials: another deployment may hold a good key.
    openai_error(401, "who", type_="authentication_error"), openai_error(403, "no", type_="permission_error"),
]
STAYS = [(openai_error(400, "bad"), 400), (openai_error(404, "no such model"), 404)]


def test_each_trigger_does_or_does_not_fall_back(ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    with routed(FALLBACK_MODELS, ups, FakeClock()) as gw:
        sdk = make_client(gw.url + "/v1")
        for reply in FALLS_BACK:
            ups["a"][1].fail = reply
            before = n(ups, "b")
            raw = ask(sdk, "primary")
            assert raw.headers["x-gateway-fallback"] == "backup", reply
            assert raw.headers["x-gateway-deployment"] == "b/m" and raw.headers["x-gateway-attempts"] == "2"
            assert n(ups, "b") == before + 1
        for reply, status in STAYS:
            ups["a"][1].fail = reply
            before = n(ups, "b")
            with pytest.raises(openai.APIStatusError) as caught:
                ask(sdk, "primary")
            assert caught.value.status_code == status and n(ups, "b") == before
        # context_length_exceeded goes to the context-window fallback, not the ordinary one
        ups["a"][1].fail = openai_error(400, "too long", code="context_length_exceeded")
        raw = ask(sdk, "primary")
        assert raw.headers["x-gateway-fallback"] == "large" and n(ups, "c") == 1
        # connect errors and timeouts
        assert ask(sdk, "gone").headers["x-gateway-fallback"] == "backup"
        ups["a"][1].fail, ups["a"][1].delay = None, 1.0
        assert ask(sdk, "slowpoke").headers["x-gateway-fallback"] == "backup"
        metrics = httpx.get(gw.url + "/metrics").text
    assert 'gateway_routing_fallbacks_total{alias="primary",reason="failure",to_alias="backup"}' in metrics
    assert 'reason="context_window",to_alias="large"' in metrics


def test_the_error_lists_every_attempt(ups: Any) -> None:
    ups["a"][1].fail = openai_error(500, "boom", type_="server_error")
    ups["b"][1].fail = openai_error(503, "down")
    with routed(FALLBACK_MODELS, ups, FakeClock()) as gw:
        answer = httpx.post(gw.url + "/v1/chat/completions", json={"model": "primary", "messages": MSG})
    assert answer.status_code == 503
    attempts = answer.json()["error"]["attempts"]
    assert [(a["deployment"], a["status"]) for a in attempts] == [("a/m", 500), ("b/m", 503), ("b/m", 503)]


def test_a_stream_falls_back_before_its_first_byte_and_errors_after(
        ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    with routed(FALLBACK_MODELS, ups, FakeClock()) as gw:
        sdk = make_client(gw.url + "/v1")
        ups["a"][1].first_chunk_delay = 2.0  # past the 300ms ttft_timeout
        raw = sdk.chat.completions.with_raw_response.create(model="primary", messages=MSG, stream=True)
        assert raw.headers["x-gateway-fallback"] == "backup"
        assert text(raw.parse()) == "echo: hello"
        ups["a"][1].fail = openai_error(500, "boom")
        raw = sdk.chat.completions.with_raw_response.create(model="primary", messages=MSG, stream=True)
        assert raw.headers["x-gateway-fallback"] == "backup"
        list(raw.parse())
        ups["a"][1].fail, ups["a"][1].first_chunk_delay, ups["a"][1].cut_after = None, 0.0, 3
        before = n(ups, "b")
        stream = sdk.chat.completions.create(model="primary", messages=MSG, stream=True)
        with pytest.raises(openai.APIError):
            list(stream)  # the first bytes went out: the failure ends the stream with an error event
        assert n(ups, "b") == before


def test_cooldown_opens_half_opens_and_closes(ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    models = {"solo": {"deployments": [{"provider": "a", "model": "m"}], "retries": 0,
                       "cooldown": {"failures": 2, "window": "60s", "base": "10s", "max": "40s"}}}
    clock = FakeClock()
    with routed(models, ups, clock) as gw:
        sdk = make_client(gw.url + "/v1")
        ups["a"][1].fail = openai_error(500, "boom")
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                ask(sdk, "solo")
        assert 'gateway_routing_circuit_state{deployment="a/m"} 2.0' in httpx.get(gw.url + "/metrics").text
        with pytest.raises(openai.InternalServerError) as cooling:  # open: the upstream is spared
            ask(sdk, "solo")
        assert cooling.value.status_code == 503 and cooling.value.code == "deployments_cooling_down"
        assert cooling.value.response.headers["retry-after"] == "10" and n(ups, "a") == 2
        clock.advance(10)  # half-open: one probe, which fails and reopens for longer (20 s)
        with pytest.raises(openai.InternalServerError):
            ask(sdk, "solo")
        assert n(ups, "a") == 3
        clock.advance(10)
        with pytest.raises(openai.InternalServerError) as still:
            ask(sdk, "solo")
        assert still.value.status_code == 503 and n(ups, "a") == 3
        clock.advance(10)
        ups["a"][1].fail = None  # the probe succeeds: closed again
        assert ask(sdk, "solo").headers["x-gateway-deployment"] == "a/m"
        assert ask(sdk, "solo").headers["x-gateway-deployment"] == "a/m"
        assert 'gateway_routing_circuit_state{deployment="a/m"} 0.0' in httpx.get(gw.url + "/metrics").text


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_probe_answered_with_a_client_error_frees_the_deployment(
        ups: Any, make_client: Callable[..., openai.OpenAI], status: int) -> None:
    """The half-open probe gets the request's own 4xx: that says nothing about the deployment, and
    the very next request may probe it (it used to stay locked for the probe's 30 s)."""
    models = {"solo": {"deployments": [{"provider": "a", "model": "m"}], "retries": 0,
                       "cooldown": {"failures": 1, "window": "60s", "base": "10s", "max": "40s"}}}
    clock = FakeClock()
    with routed(models, ups, clock) as gw:
        sdk = make_client(gw.url + "/v1")
        ups["a"][1].fail = openai_error(500, "boom")
        with pytest.raises(openai.InternalServerError):
            ask(sdk, "solo")  # opens for 10 s
        clock.advance(10)
        ups["a"][1].fail = openai_error(status, "bad request")
        with pytest.raises(openai.APIStatusError) as refused:
            ask(sdk, "solo")  # the probe
        assert refused.value.status_code == status and n(ups, "a") == 2
        ups["a"][1].fail = None
        clock.advance(1)
        assert ask(sdk, "solo").headers["x-gateway-deployment"] == "a/m"
        assert n(ups, "a") == 3


def test_retry_after_opens_and_a_bounded_wait_rides_out_the_cooldown(
        ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    models = {"patient": {"deployments": [{"provider": "a", "model": "m"}], "retries": 1,
                          "wait_for_recovery": "10s"},
              "impatient": {"deployments": [{"provider": "b", "model": "m"}], "retries": 1}}
    clock = FakeClock()
    with routed(models, ups, clock) as gw:
        sdk = make_client(gw.url + "/v1")
        for name in ("a", "b"):
            calls = iter([openai_error(429, "later", type_="rate_limit_error", headers={"retry-after": "5"})])
            ups[name][1].fail = None
            ups[name][0].handler = lambda r, calls=calls, s=ups[name][1]: next(calls, None) or s(r)
        start = clock.now
        raw = ask(sdk, "patient")  # 429 + Retry-After 5 → open 5 s → wait (fake clock) → probe
        assert raw.headers["x-gateway-attempts"] == "2" and clock.now - start >= 5 and n(ups, "a") == 2
        with pytest.raises(openai.RateLimitError):  # no wait configured: the 429 answers at once
            ask(sdk, "impatient")
        assert n(ups, "b") == 1


def test_hedging_starts_a_second_attempt_and_the_first_answer_wins(
        ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    models = {"h": {"strategy": "priority", "hedge": {"enabled": True, "after": "100ms"},
                    "deployments": [{"provider": "a", "model": "m", "priority": 0},
                                    {"provider": "b", "model": "m", "priority": 1}]}}
    ups["a"][1].delay = ups["a"][1].first_chunk_delay = 1.0
    with routed(models, ups, FakeClock()) as gw:
        sdk = make_client(gw.url + "/v1")
        raw = ask(sdk, "h")
        assert raw.headers["x-gateway-deployment"] == "b/m" and raw.headers["x-gateway-attempts"] == "2"
        raw = sdk.chat.completions.with_raw_response.create(model="h", messages=MSG, stream=True)
        assert raw.headers["x-gateway-deployment"] == "b/m"
        assert text(raw.parse()) == "echo: hello"
        ups["a"][1].delay = ups["a"][1].first_chunk_delay = 0.0
        assert ask(sdk, "h").headers["x-gateway-attempts"] == "1"  # answered in time: no hedge
        metrics = httpx.get(gw.url + "/metrics").text
    assert 'gateway_routing_hedges_total{alias="h",outcome="won"} 2.0' in metrics


def test_two_instances_share_cooldowns_and_statistics(ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    models = {"primary": {"deployments": [{"provider": "a", "model": "m"}], "retries": 0, "fallbacks": ["backup"],
                          "cooldown": {"failures": 2, "base": "30s"}},
              "backup": {"strategy": "latency", "deployments": [{"provider": "b", "model": "m"}]}}
    store = {"redis_url": "redis://127.0.0.1:6379/0", "key_prefix": f"t-routing-{uuid4().hex[:8]}"}
    clock = FakeClock()
    with routed(models, ups, clock, store) as one, routed(models, ups, clock, store, seed=2) as two:
        sdk1, sdk2 = make_client(one.url + "/v1"), make_client(two.url + "/v1")
        ups["a"][1].fail = openai_error(500, "boom")
        for _ in range(2):
            assert ask(sdk1, "primary").headers["x-gateway-fallback"] == "backup"
        assert n(ups, "a") == 2
        assert ask(sdk2, "primary").headers["x-gateway-attempts"] == "1"  # two sees one's open circuit
        assert n(ups, "a") == 2
        stats = two.services.routing_stats
        row = stats.get("b/m") if stats is not None else None
        assert row is not None and row["lat_n"] >= 2  # and the latency samples one took
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        keys = list(client.scan_iter(match=f"{store['key_prefix']}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_hedging_after_the_deployments_p95(ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    models = {"h": {"strategy": "priority", "hedge": {"enabled": True, "after": "p95", "min_delay": "50ms"},
                    "deployments": [{"provider": "a", "model": "m", "priority": 0},
                                    {"provider": "b", "model": "m", "priority": 1}]}}
    with routed(models, ups, FakeClock()) as gw:
        sdk = make_client(gw.url + "/v1")
        for _ in range(3):  # samples for a's p95; no hedge before them
            assert ask(sdk, "h").headers["x-gateway-attempts"] == "1"
        ups["a"][1].delay = 1.0  # a's tail turns slow: the hedge answers
        raw = ask(sdk, "h")
        assert raw.headers["x-gateway-deployment"] == "b/m" and raw.headers["x-gateway-attempts"] == "2"


def test_routing_keeps_serving_when_redis_is_down(ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    models = {"fast": {"strategy": "latency", "deployments": [{"provider": "a", "model": "m"},
                                                              {"provider": "b", "model": "m"}]}}
    store = {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "timeout": "100ms",
             "key_prefix": f"t-routing-{uuid4().hex[:8]}"}
    clock = FakeClock()
    with routed(models, ups, clock, store) as gw:
        sdk = make_client(gw.url + "/v1")
        for _ in range(3):
            clock.advance(2.0)  # past the cache TTL: every request tries the store again
            assert ask(sdk, "fast").headers["x-gateway-deployment"] in ("a/m", "b/m")
        metrics = httpx.get(gw.url + "/metrics").text
    assert 'gateway_store_errors_total{operation="routing_read"} 3.0' in metrics


def test_cost_strategy_ranks_by_the_price_table_accounting_bills_with(
        ups: Any, make_client: Callable[..., openai.OpenAI], tmp_path: Any) -> None:
    """No inline prices: the shared price table says b's model is the cheapest; c's own
    `cost_per_mtok` hint (5) ranks it between b (0.25) and a (20). Every call goes to b; with b
    failing, the fallback within the alias is c."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("a: {m-dear: {input: 10, output: 30}}\nb: {m-cheap: {input: 0.1, output: 0.4}}\n")
    models = {"c": {"strategy": "cost", "retries": 1,
                    "deployments": [{"provider": "a", "model": "m-dear"}, {"provider": "b", "model": "m-cheap"},
                                    {"provider": "c", "model": "m-x", "cost_per_mtok": 5}]}}
    with routed(models, ups, FakeClock(), accounting={"prices_file": str(prices)}) as gw:
        sdk = make_client(gw.url + "/v1")
        assert {ask(sdk, "c").headers["x-gateway-deployment"] for _ in range(10)} == {"b/m-cheap"}
        ups["b"][1].fail = openai_error(500, "down", type_="server_error")
        assert ask(sdk, "c").headers["x-gateway-deployment"] == "c/m-x"
    assert n(ups, "a") == 0


def test_default_cooldown_lets_retries_absorb_rare_errors_and_opens_on_a_failing_deployment(
        ups: Any, make_client: Callable[..., openai.OpenAI]) -> None:
    """One deployment at 100 requests a second (fake clock) with 2 % upstream 500s: every request is
    answered (its retry succeeds) and the circuit stays closed. Then it fails every call: the circuit
    opens within a few requests and the next is answered 503 without reaching the upstream."""
    models = {"solo": {"deployments": [{"provider": "a", "model": "m"}]}}
    calls = iter(range(10**9))
    ups["a"][0].handler = lambda r: openai_error(500, "boom") if next(calls) % 50 == 49 else openai_echo(r)
    clock = FakeClock()
    with routed(models, ups, clock) as gw:
        sdk = make_client(gw.url + "/v1")
        for _ in range(400):
            clock.advance(0.01)
            assert ask(sdk, "solo").headers["x-gateway-deployment"] == "a/m"
        assert n(ups, "a") > 400  # failures happened and were retried
        assert 'gateway_routing_circuit_state{deployment="a/m"} 0.0' in httpx.get(gw.url + "/metrics").text
        ups["a"][0].handler = lambda r: openai_error(500, "boom")
        for _ in range(3):  # two attempts each: the fifth failure in a row opens the circuit
            clock.advance(0.01)
            with pytest.raises(openai.InternalServerError):
                ask(sdk, "solo")
        before = n(ups, "a")
        with pytest.raises(openai.InternalServerError) as cooling:
            ask(sdk, "solo")
        assert cooling.value.code == "deployments_cooling_down" and n(ups, "a") == before
