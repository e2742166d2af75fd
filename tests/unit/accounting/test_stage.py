"""The accounting stage on its own: settle writes, cache hits, budgets, the failure policy and the
retry queue (nothing lost silently)."""

from __future__ import annotations

import calendar
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from gateway.accounting.budgets import BudgetPlan, periods_at
from gateway.accounting.estimate import text_of_body, text_of_sse
from gateway.accounting.prices import UnitPrice
from gateway.accounting.retry import RetryQueue
from gateway.accounting.stage import AccountingStage, add_usage_fields, spend_dims, spend_metrics
from gateway.accounting.store import BUDGET_ADJUST, BUDGET_RELEASE, SPEND_ADD, USAGE_APPEND
from gateway.config import AuthConfig, Price
from gateway.context import JSONReply, Principal, RequestContext, Usage
from gateway.errors import BudgetExceededError, StoreUnavailableError
from gateway.metrics import Metrics
from gateway.schemas import Operation
from gateway.store import StoreOp
from gateway.store.memory import MemoryStore
from gateway.tokens import TokenCounter

NOW = calendar.timegm((2026, 11, 22, 12, 0, 0))
PRICE = UnitPrice.from_price(Price(input=2.5, output=10, cached_input=1.25))
APP = Principal(name="app", team="search", key_hash=hashlib.sha256(b"k1").hexdigest())
AUTH = AuthConfig.model_validate({"keys": [
    {"name": "app", "team": "search", "key": "k1", "budget": {"usd": 0.001, "period": "day"}}],
    "teams": {"search": {"budget": {"usd": 1, "period": "month"}}}})
TOKENS = TokenCounter()
TOKENS.preload(("cl100k_base",))  # shipped in tests/data/tiktoken


class DownStore(MemoryStore):
    async def budget_reserve(self, tag: str, counters: Sequence[str], limits: Sequence[int], amount: int,
                             ttl: int, call: str = "") -> int:
        raise StoreUnavailableError("down")


def make_stage(store: MemoryStore | None = None, *, fail_closed: bool = False, bound: int = 10,
               metrics: Metrics | None = None) -> AccountingStage:
    metrics = metrics or Metrics()
    return AccountingStage(prices={"up/gpt": PRICE, "up/free": None}, reserve_prices={"gpt": PRICE, "free": None},
                           budgets=BudgetPlan(AUTH), store=store or MemoryStore(), tokens=TOKENS,
                           metrics=metrics, retry=RetryQueue(bound, metrics), fail_closed=fail_closed,
                           clock=lambda: NOW)


def make_ctx(alias: str = "gpt", *, stream: bool = False, principal: Principal = APP) -> RequestContext:
    ctx = RequestContext(request_id="r1", operation=Operation.CHAT, alias=alias, stream=stream, headers={},
                         body={"model": alias, "messages": [{"role": "user", "content": "hello there"}],
                               "max_tokens": 10})
    ctx.principal = principal
    return ctx


def called(ctx: RequestContext, usage: Usage | None, deployment: str = "up/gpt") -> RequestContext:
    ctx.attempts, ctx.deployment, ctx.provider, ctx.usage = 1, deployment, "up", usage
    return ctx


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return got or 0.0


def test_settle_writes_spend_and_the_log_and_sets_the_header() -> None:
    stage = make_stage()
    ctx = called(make_ctx(), Usage(prompt_tokens=9, completion_tokens=3))
    reply = JSONReply(200, b"{}", ctx.response_headers)
    ops = stage.settle(ctx, reply, None)
    assert [op.write for op in ops] == [SPEND_ADD, USAGE_APPEND]
    assert reply.headers["x-gateway-cost-usd"] == "0.000053"
    day, _ttl, dims, metrics = ops[0].args
    assert day == "20261122"
    assert dims == (f"key|{APP.key_id}|app", "team|search", "alias|gpt", "deployment|up/gpt")
    assert metrics == [("requests", 1), ("cost", 53), ("prompt_tokens", 9), ("completion_tokens", 3)]
    record = ops[1].args[0]
    assert record["cost_micro_usd"] == "53" and record["key"] == "app" and record["estimated"] == "0"


def test_unknown_price_is_unknown_not_zero(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    stage = make_stage(metrics=metrics)
    ctx = called(make_ctx("free"), Usage(prompt_tokens=9, completion_tokens=3), "up/free")
    reply = JSONReply(200, b"{}", ctx.response_headers)
    with caplog.at_level(logging.WARNING):
        ops = stage.settle(ctx, reply, None)
    assert reply.headers["x-gateway-cost-usd"] == "unknown"
    assert ops[1].args[0]["cost_micro_usd"] == "unknown"
    assert ("unpriced", 1) in ops[0].args[3]
    assert not any(name == "cost" for name, _ in ops[0].args[3])
    assert value(metrics, "gateway_unpriced_calls_total", alias="free", deployment="up/free") == 1
    assert "call cost unknown" in caplog.text


def test_cache_hit_costs_nothing_and_records_the_saving() -> None:
    metrics = Metrics()
    stage = make_stage(metrics=metrics)
    ctx = make_ctx()
    ctx.cache_hit, ctx.usage, ctx.deployment = True, Usage(prompt_tokens=9, completion_tokens=3), "up/gpt"
    reply = JSONReply(200, b"{}", ctx.response_headers)
    ops = stage.settle(ctx, reply, None)
    assert reply.headers["x-gateway-cost-usd"] == "0.000000"
    record = ops[1].args[0]
    assert (record["cost_micro_usd"], record["saved_micro_usd"], record["cache_hit"]) == ("0", "53", "1")
    assert ("saved", 53) in ops[0].args[3] and ("cache_hits", 1) in ops[0].args[3]
    assert value(metrics, "gateway_cache_saved_usd_total", alias="gpt") == pytest.approx(53e-6)


async def test_budget_reserve_then_reconcile() -> None:
    store = MemoryStore()
    stage = make_stage(store)
    ctx = make_ctx()
    await stage.admit(ctx)
    reserved = stage.reservation(ctx)
    assert reserved > 0
    assert ctx.settle_before_reply  # the reconciliation is written before the answer
    tag, counters = "team:search", ("key:app:20261122", "team:search:202611")
    assert await store.budget_read(tag, counters) == [reserved, reserved]
    ops = stage.settle(called(ctx, Usage(prompt_tokens=9, completion_tokens=3)), None, None)
    await store.run_batch(ops)
    assert await store.budget_read(tag, counters) == [53, 53]


async def test_budget_released_when_no_call_was_made() -> None:
    store = MemoryStore()
    stage = make_stage(store)
    ctx = make_ctx()
    await stage.admit(ctx)
    ops = stage.settle(ctx, None, None)  # e.g. a later stage refused the call
    assert [op.write for op in ops] == [BUDGET_ADJUST]
    await store.run_batch(ops)
    assert await store.budget_read("team:search", ("key:app:20261122",)) == [0]


async def test_exhausted_budget_is_a_429_insufficient_quota() -> None:
    metrics = Metrics()
    store = MemoryStore()
    stage = make_stage(store, metrics=metrics)
    await store.run_batch([BUDGET_ADJUST("team:search", ("key:app:20261122",), 1000, 60)])
    with pytest.raises(BudgetExceededError) as refused:
        await stage.admit(make_ctx())
    assert refused.value.http_status == 429
    assert refused.value.to_dict()["error"]["code"] == "insufficient_quota"
    assert "key 'app'" in refused.value.message and "$0.001 per day" in refused.value.message
    assert value(metrics, "gateway_budget_rejections_total", scope="key") == 1
    # no budget, no round trip: the anonymous caller and keys without budgets pass untouched
    unbudgeted = make_ctx(principal=Principal(name="x", key_hash="h"))
    assert await make_stage(DownStore()).admit(unbudgeted) is None
    assert not unbudgeted.settle_before_reply  # nothing held: its writes may follow the answer


async def test_budget_store_failure_follows_the_policy() -> None:
    ctx = make_ctx()
    await make_stage(DownStore()).admit(ctx)  # fail open: admitted, the real cost is still reconciled
    ops = make_stage(DownStore()).settle(called(ctx, Usage(prompt_tokens=9, completion_tokens=3)), None, None)
    # the reserve timed out: whether the store applied it is unknown, so it is released if it was
    assert [op.write for op in ops] == [SPEND_ADD, USAGE_APPEND, BUDGET_RELEASE, BUDGET_ADJUST]
    assert ops[3].args[2] == 53
    assert len({op.once for op in ops}) == 4 and len({op.once[0] for op in ops if op.once}) == 1
    refused = make_stage(DownStore(), fail_closed=True)
    with pytest.raises(StoreUnavailableError):
        await refused.admit(make_ctx())
    # refused, so never settled: the release waits in the retry queue instead
    assert [op.write for group in refused.retry.take(10) for op in group] == [BUDGET_RELEASE]


async def test_failed_writes_are_retried_then_logged_as_lost(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    stage = make_stage(bound=2, metrics=metrics)
    down = StoreUnavailableError("down")
    for i in range(3):
        ctx = called(make_ctx(), Usage(prompt_tokens=i, completion_tokens=1))
        ctx.request_id = f"r{i}"
        ops = stage.settle(ctx, None, None)
        assert all(op.once is not None for op in ops)  # every write is applied at most once
        with caplog.at_level(logging.ERROR):
            stage.settle_failed(ctx, ops, down)
    # the queue keeps the newest 2 calls
    assert len(stage.retry) == 2
    assert value(metrics, "gateway_accounting_records_lost_total") == 1
    lost = [r for r in caplog.records if "usage record lost" in r.getMessage()]
    assert len(lost) == 1 and lost[0].fields["record"]["request_id"] == "r0"  # type: ignore[attr-defined]
    # a later settle carries only its own call's writes: the queue is sent on its own
    ctx = called(make_ctx(), Usage(prompt_tokens=5, completion_tokens=1))
    assert [op.args[0]["request_id"] for op in stage.settle(ctx, None, None) if op.write is USAGE_APPEND] == ["r1"]
    store = MemoryStore()
    assert await stage.retry.send(store) and len(stage.retry) == 0
    assert sorted(r["request_id"] for r in await store.usage_read(0, 2**62, 10)) == ["r1", "r2"]


async def test_a_write_the_store_refuses_for_good_is_logged_as_lost_not_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    stage = make_stage(metrics=metrics)
    ctx = called(make_ctx(), Usage(prompt_tokens=5, completion_tokens=1))
    ops = stage.settle(ctx, None, None)
    with caplog.at_level(logging.ERROR):
        stage.settle_failed(ctx, ops[:1], Exception("ERR value is not an integer or out of range"))
    assert len(stage.retry) == 0 and value(metrics, "gateway_accounting_records_lost_total") == 1
    stage.settle_failed(ctx, ops[:1], Exception("READONLY You can't write against a read only replica."))
    assert len(stage.retry) == 1


def test_estimates_a_cut_stream_from_what_was_sent() -> None:
    stage = make_stage()
    ctx = called(make_ctx(stream=True), None)
    ctx.capture = [b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
                    b'data: {"choices":[{"index":0,"delta":{"content":"hello"}}]}\n\ndata: {"choices":[{"ind',
                    ]
    ops = stage.settle(ctx, None, None)
    record = ops[1].args[0]
    assert record["estimated"] == "1" and record["completion_tokens"] == "1"
    assert ctx.usage is not None and ctx.usage.estimated


def test_a_stream_that_failed_before_its_first_byte_consumed_nothing() -> None:
    ctx = called(make_ctx(stream=True), None)
    ctx.capture, ctx.status = [], 502
    record = make_stage().settle(ctx, None, None)[1].args[0]
    assert (record["prompt_tokens"], record["completion_tokens"], record["cost_micro_usd"]) == ("0", "0", "0")


def test_text_extraction_and_usage_annotation() -> None:
    sse = (b'data: {"choices":[{"index":0,"delta":{"content":"a","tool_calls":[{"function":{"name":"f",'
           b'"arguments":"{}"}}]}}]}\n\ndata: {"choices":[{"index":0,"text":"b"}]}\n\ndata: [DONE]\n\n')
    assert text_of_sse([sse]) == "af{}b"
    assert text_of_body(b'{"choices":[{"message":{"content":"hi"}}]}') == "hi"
    assert text_of_body(b"not json") == ""
    out = add_usage_fields(b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\ndata: [DONE]\n\n', {"cost": 0.5})
    assert out == b'data: {"choices":[],"usage":{"prompt_tokens":1,"cost":0.5}}\n\ndata: [DONE]\n\n'


def test_calendar_periods() -> None:
    p = periods_at(calendar.timegm((2026, 12, 31, 23, 59, 59)))
    assert (p.day, p.month) == ("20261231", "202612")
    assert p.day_end == p.month_end == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert periods_at(p.day_end).day == "20270101"


def test_spend_skips_zero_metrics_and_empty_dimensions() -> None:
    from gateway.accounting.records import UsageRecord

    record = UsageRecord(ts=0, request_id="r", key="solo", team="", alias="a", deployment="", provider="",
                         stream=False, status=502, prompt_tokens=0, completion_tokens=0, cached_tokens=0,
                         cache_write_tokens=0, cost_micro_usd=0, saved_micro_usd=0, estimated=False,
                         cache_hit=False, latency_ms=1)
    assert spend_metrics(record) == [("requests", 1)]
    assert spend_dims("5e1f", "solo", "", "a", "") == ("key|5e1f|solo", "alias|a")
    assert spend_dims("", "anonymous", "", "a", "") == ("key|anonymous", "alias|a")


async def test_a_cancelled_hedge_is_charged_for_its_prompt() -> None:
    store = MemoryStore()
    stage = make_stage(store)
    ctx = make_ctx()
    await stage.admit(ctx)
    called(ctx, Usage(prompt_tokens=9, completion_tokens=3), "up/free")
    ctx.cancelled_attempts.append("up/gpt")
    ops = stage.settle(ctx, None, None)
    records = [op.args[0] for op in ops if op.write is USAGE_APPEND]
    assert [(r["deployment"], r["hedge"], r["status"]) for r in records] == [("up/free", "0", "200"),
                                                                             ("up/gpt", "1", "499")]
    hedge = records[1]
    prompt = int(hedge["prompt_tokens"])
    assert prompt > 0 and hedge["completion_tokens"] == "0" and hedge["estimated"] == "1"
    assert int(hedge["cost_micro_usd"]) == (prompt * 2_500_000 + 500_000) // 1_000_000
    hedge_spend = [op.args[3] for op in ops if op.write is SPEND_ADD][1]
    assert hedge_spend[0] == ("hedges", 1)
    await store.run_batch(ops)
    # the budget counts what the hedge cost (the answering deployment has no price: nothing more)
    assert await store.budget_read("team:search", ("key:app:20261122",)) == [int(hedge["cost_micro_usd"])]


async def test_the_retry_queue_waits_for_writes_the_store_refuses_for_now() -> None:
    class ReadOnly(MemoryStore):
        async def run_batch(self, ops: Sequence[StoreOp]) -> list[Any]:
            return [Exception("READONLY You can't write against a read only replica.") for _ in ops]

    stage = make_stage()
    ops = stage.settle(called(make_ctx(), Usage(prompt_tokens=5, completion_tokens=1)), None, None)
    stage.settle_failed(make_ctx(), ops, StoreUnavailableError("down"))
    assert not await stage.retry.send(ReadOnly())  # answered, but took nothing: try again later
    assert len(stage.retry) == 1 and len(stage.retry.take(1)[0]) == len(ops)
