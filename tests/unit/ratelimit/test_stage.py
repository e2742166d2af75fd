"""The stage's pure parts: scope plans, reservation sizes, headers, refusals, settle ops and the
failure policy, on a MemoryStore with an injected clock."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.context import Principal, RequestContext, Usage
from gateway.errors import RateLimitError, StoreUnavailableError
from gateway.metrics import Metrics
from gateway.ratelimit.core import Admitted, ScopeLimits, ScopeState
from gateway.ratelimit.stage import FailureReporter, RateLimiter, RateLimitStage, duration, set_headers
from gateway.ratelimit.store import LIMITS_SETTLE
from gateway.schemas import Operation
from gateway.store.memory import MemoryStore
from gateway.tokens import TokenCounter

CONFIG = """
store: {failure_policy: %s}
limits_defaults: {max_tokens_cap: 1000}
auth:
  keys: [{name: app, team: search, key: sk-app-0123456789, limits: {rpm: 2, tpm: 5000}}]
  teams: {search: {limits: {rpm: 10, max_parallel: 5}}, empty: {limits: {}}}
providers: {mock: {type: mock}}
models:
  m: {deployments: [{provider: mock, model: echo}], limits: {rpm: 100, tpm: 100000}, timeout: 10s}
  free: {deployments: [{provider: mock, model: echo}]}
"""

KEY = Principal(name="app", team="search", key_hash="a" * 64,
                limits=parse_config(CONFIG % "fail_open").auth.keys[0].limits)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def limiter(policy: str = "fail_open", store: Any = None) -> tuple[RateLimiter, Clock, Metrics]:
    clock, metrics = Clock(), Metrics()
    lim = RateLimiter(parse_config(CONFIG % policy), store or MemoryStore(), TokenCounter(), metrics, clock=clock)
    return lim, clock, metrics


def ctx(body: dict[str, Any] | None = None, alias: str = "m", principal: Principal = KEY,
        operation: Operation = Operation.CHAT) -> RequestContext:
    body = body or {"model": alias, "messages": [{"role": "user", "content": "hello world"}]}
    return RequestContext(request_id="r", operation=operation, body=body, alias=alias, stream=False, headers={},
                          principal=principal)


def test_plan_covers_key_team_alias_and_is_cached() -> None:
    lim, _, _ = limiter()
    plan = lim.plan(KEY, "m")
    assert [s.id[:2] for s in plan] == ["k:", "t:", "a:"]
    assert plan[0].label == "key 'app'" and plan[0].values == (2, 5000, 0, 0, 0)
    assert plan[1].values == (10, 0, 5, 0, 0)
    assert lim.plan(KEY, "m") is plan
    assert lim.plan(Principal(name="anonymous"), "free") == ()
    assert lim.plan(Principal(name="x", team="empty"), "free") == ()


def test_reservation_counts_prompt_plus_completion_budget() -> None:
    lim, _, _ = limiter()
    base = {"model": "m", "messages": [{"role": "user", "content": "hello world"}]}
    prompt, _ = TokenCounter().count_prompt("chat", base, "m")
    assert lim.reservation(ctx(base)) == prompt + 1000  # the configured cap
    assert lim.reservation(ctx({**base, "max_tokens": 50})) == prompt + 50
    assert lim.reservation(ctx({**base, "max_completion_tokens": 70, "n": 3})) == prompt + 210
    embed = {"model": "m", "input": "some text here"}
    assert lim.reservation(ctx(embed, operation=Operation.EMBEDDINGS)) == TokenCounter().count_prompt(
        "embeddings", embed, "m")[0]


async def test_admit_sets_headers_and_refuses_with_retry_after() -> None:
    lim, clock, metrics = limiter()
    stage = RateLimitStage(lim)
    first = ctx({"model": "m", "messages": [], "max_tokens": 10})
    await stage.admit(first)
    assert first.response_headers["x-ratelimit-limit-requests"] == "2"
    assert first.response_headers["x-ratelimit-remaining-requests"] == "1"
    assert first.response_headers["x-ratelimit-reset-requests"] == "1m0s"
    assert first.response_headers["x-ratelimit-limit-tokens"] == "5000"
    # tokens reserved: the reconciliation is written before the answer (the next call must see it)
    assert first.settle_before_reply
    clock.now += 15
    await stage.admit(ctx({"model": "m", "messages": [], "max_tokens": 10}))
    clock.now += 1.5
    with pytest.raises(RateLimitError) as caught:
        await stage.admit(ctx())
    error = caught.value
    assert error.http_status == 429 and error.code == "rate_limit_exceeded"
    assert error.headers["retry-after"] == "44"  # 60 - 16.5, rounded up
    assert "key 'app'" in error.message and "requests per minute" in error.message
    assert metrics.registry.get_sample_value("gateway_ratelimit_rejections_total",
                                             {"scope": "key", "limit": "requests"}) == 1


async def test_settle_reconciles_with_usage_and_releases() -> None:
    store = MemoryStore()
    lim, _, _ = limiter(store=store)
    stage = RateLimitStage(lim)
    c = ctx({"model": "m", "messages": [], "max_tokens": 400})
    await stage.admit(c)
    reserved = c.ratelimit.admit.tokens
    c.usage = Usage(prompt_tokens=3, completion_tokens=4)
    ops = stage.settle(c, None, None)
    assert [(op.write, op.args[3:]) for op in ops] == [(LIMITS_SETTLE, (reserved, 7, True))]
    await store.run_batch(ops)
    c2 = ctx({"model": "m", "messages": [], "max_tokens": 1})
    await stage.admit(c2)
    assert c2.response_headers["x-ratelimit-remaining-tokens"] == str(5000 - 7 - c2.ratelimit.tokens)
    assert store.limiter.scopes["t:search"].leases.keys() == {c2.ratelimit.admit.rid}


def test_settle_without_usage() -> None:
    lim, _, _ = limiter()
    c = ctx()
    assert lim.settle_ops(c) == []  # nothing reserved
    from gateway.ratelimit.stage import Held, LimitHold

    scopes = (ScopeLimits("k:x", "key 'x'", tpm=10),)
    c.ratelimit = Held(admit=LimitHold(scopes, "r1", 0, 9),
                       deployments=[LimitHold(scopes, "d1", 0, 9), LimitHold(scopes, "d2", 0, 9)])
    assert [op.args[4] for op in lim.settle_ops(c)] == [0, 0, 0]  # failed before any output: refund
    c.first_byte_at = 1.0  # a stream cut before its usage arrived: the reservation stands
    assert [op.args[4] for op in lim.settle_ops(c)] == [9, 0, 9]
    c.usage, c.cache_hit = Usage(prompt_tokens=5, completion_tokens=5), True  # a cache hit spent nothing
    assert [op.args[4] for op in lim.settle_ops(c)] == [0, 0, 0]


class DownStore:
    async def rl_reserve(self, *args: object) -> object:
        raise StoreUnavailableError("down")


async def test_fail_open_admits_and_fail_closed_refuses(caplog: pytest.LogCaptureFixture) -> None:
    lim, _, metrics = limiter("fail_open", DownStore())
    c = ctx()
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        await RateLimitStage(lim).admit(c)
        await RateLimitStage(lim).admit(ctx())
    assert c.ratelimit.admit is None and lim.settle_ops(c) == []
    assert metrics.registry.get_sample_value("gateway_ratelimit_store_failures_total",
                                             {"operation": "reserve", "policy": "fail_open"}) == 2
    assert len([r for r in caplog.records if "unavailable" in r.message]) == 1  # rate-limited log
    closed, _, _ = limiter("fail_closed", DownStore())
    with pytest.raises(StoreUnavailableError):
        await RateLimitStage(closed).admit(ctx())


def test_failure_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    reporter = FailureReporter(Metrics(), "fail_open", clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        for t in (0.0, 1.0, 9.9, 10.0, 12.0):
            now[0] = t
            reporter.report("reserve", RuntimeError("x"))
    assert len(caplog.records) == 2


async def test_deployment_gate() -> None:
    lim, _, _ = limiter()
    c = ctx(principal=Principal(name="anonymous"), alias="free")
    limits = parse_config(CONFIG % "fail_open").models["m"].limits
    assert limits is not None
    one = limits.model_copy(update={"rpm": 1, "tpm": None})
    assert await lim.acquire(c, "mock/echo", one) is None
    refused = await lim.acquire(c, "mock/echo", one)
    assert isinstance(refused, RateLimitError) and "deployment 'mock/echo'" in refused.message
    assert len(c.ratelimit.deployments) == 1


def test_headers_pick_the_tightest_scope_and_format_durations() -> None:
    a = ScopeLimits("k:a", "key 'a'", rpm=10, tpm=1000)
    b = ScopeLimits("t:b", "team 'b'", rpm=100, tpm=500)
    headers: dict[str, str] = {}
    set_headers(headers, (a, b), Admitted((ScopeState(4, 100, 0, 0, 0, 0), ScopeState(50, 450, 30_000, 0, 0, 0))),
                45_000)
    assert headers == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "6",
                       "x-ratelimit-reset-requests": "15s", "x-ratelimit-limit-tokens": "500",
                       "x-ratelimit-remaining-tokens": "50", "x-ratelimit-reset-tokens": "45s"}
    assert [duration(ms) for ms in (-5, 20, 1500, 60_000, 61_500)] == ["0ms", "20ms", "1.5s", "1m0s", "1m1.5s"]


async def test_deployment_tokens_counted_even_when_admit_had_no_token_limit() -> None:
    lim, _, _ = limiter()
    c = ctx({"model": "free", "messages": [], "max_tokens": 30}, alias="free", principal=Principal(name="anonymous"))
    await RateLimitStage(lim).admit(c)  # no scopes at all
    limits = parse_config(CONFIG % "fail_open").models["m"].limits
    assert limits is not None
    assert await lim.acquire(c, "mock/echo", limits.model_copy(update={"rpm": None, "tpm": 40})) is None
    assert c.ratelimit.deployments[0].tokens == lim.reservation(c) > 30
    refused = await lim.acquire(c, "mock/echo", limits.model_copy(update={"rpm": None, "tpm": 40}))
    assert isinstance(refused, RateLimitError) and "tokens per minute" in refused.message


GO_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?")


@given(st.integers(min_value=-5, max_value=30 * 3_600_000))
def test_reset_durations_have_one_spelling_that_reads_back(ms: int) -> None:
    text = duration(ms)
    match = GO_DURATION.fullmatch(text)
    assert match and text, text
    hours, minutes, seconds, millis = match.groups()
    back = (int(hours or 0) * 3_600_000 + int(minutes or 0) * 60_000
            + round(float(seconds or 0) * 1000) + int(millis or 0))
    assert back == max(0, ms)
    if seconds is not None:
        assert float(seconds) < 60  # 60 seconds is spelt 1m0s, never 60s
        assert "." not in seconds or not seconds.endswith("0")


def test_reset_durations_in_openais_notation() -> None:
    assert [duration(ms) for ms in (0, 20, 1000, 1500, 59_999, 60_000, 360_000, 3_661_001)] == \
        ["0ms", "20ms", "1s", "1.5s", "59.999s", "1m0s", "6m0s", "1h1m1.001s"]
