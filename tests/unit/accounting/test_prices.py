"""Golden tests: recorded provider usage shapes → exact token counts and micro-USD; properties of the
cost function; the shipped price table."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.accounting.prices import (
    PriceError,
    UnitPrice,
    format_usd,
    load_prices,
    lookup,
    micro_from_pico,
    parse_prices,
    resolve_deployment,
)
from gateway.config import Deployment, Price
from gateway.context import Usage
from gateway.providers.anthropic import AnthropicStream, usage_of
from gateway.providers.gemini import GeminiStream
from gateway.providers.gemini import usage_from as gemini_usage
from gateway.providers.openai import OpenAIStream, usage_from
from tests.support.openai_fake import chat_completion
from tests.support.servers import sse_lines

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
TABLE = load_prices(ROOT / "gateway" / "data" / "prices.yaml")


def unit(section: str, model: str) -> UnitPrice:
    price = lookup(TABLE, (section,), model)
    assert price is not None, f"{section}/{model} missing from gateway/data/prices.yaml"
    return UnitPrice.from_price(price)


# --- OpenAI -------------------------------------------------------------------------------------

def test_openai_non_streamed_without_cache() -> None:
    body = chat_completion("x " * 10, "gpt-4o-2024-08-06", prompt_tokens=1000)
    body["usage"]["completion_tokens"] = 500
    usage = usage_from(body["usage"])
    assert usage == Usage(prompt_tokens=1000, completion_tokens=500)
    # 1000 x $2.50/M + 500 x $10/M = $0.0025 + $0.005
    assert unit("openai", "gpt-4o-2024-08-06").cost_micro(usage) == 7_500


def test_openai_non_streamed_with_cached_tokens() -> None:
    raw = {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
           "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 0}}
    usage = usage_from(raw)
    assert usage == Usage(prompt_tokens=2006, completion_tokens=300, cached_tokens=1920)
    # 86 uncached x 2.50 + 1920 cached x 1.25 + 300 x 10.00 (µUSD per token = $ per M)
    assert unit("openai", "gpt-4o").cost_micro(usage) == 215 + 2_400 + 3_000


def test_openai_cost_rounds_half_up_once() -> None:
    usage = Usage(prompt_tokens=1234, completion_tokens=57, cached_tokens=1024)
    price = unit("openai", "gpt-4o-mini")
    # 210 x 0.15 + 1024 x 0.075 + 57 x 0.60 = 31.5 + 76.8 + 34.2 = 142.5 µUSD → 143
    assert price.cost_pico(usage) == 142_500_000
    assert price.cost_micro(usage) == 143


def _stream_usage(chunks: list[bytes], translator: OpenAIStream | AnthropicStream | GeminiStream) -> Usage:
    out = b"".join(translator.feed(c) for c in chunks) + translator.finish()
    assert out
    assert translator.usage is not None
    return translator.usage


def test_openai_streamed_with_and_without_cache() -> None:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1-mini"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}], "usage": None},
              {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
              {**base, "choices": [], "usage": {"prompt_tokens": 5000, "completion_tokens": 800, "total_tokens": 5800,
                                                "prompt_tokens_details": {"cached_tokens": 4096}}}]
    usage = _stream_usage(sse_lines(events), OpenAIStream(client_wants_usage=False))
    assert usage == Usage(prompt_tokens=5000, completion_tokens=800, cached_tokens=4096)
    # 904 x 0.40 + 4096 x 0.10 + 800 x 1.60 = 361.6 + 409.6 + 1280 = 2051.2 → 2051
    assert unit("openai", "gpt-4.1-mini").cost_micro(usage) == 2_051
    events[-1]["usage"] = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    usage = _stream_usage(sse_lines(events), OpenAIStream(client_wants_usage=True))
    assert usage == Usage(prompt_tokens=12, completion_tokens=3)
    assert unit("openai", "gpt-4.1-mini").cost_micro(usage) == 10  # 4.8 + 4.8 = 9.6 → 10


def test_deepseek_cache_hit_field() -> None:
    usage = usage_from({"prompt_tokens": 1000, "completion_tokens": 100, "prompt_cache_hit_tokens": 800,
                        "prompt_cache_miss_tokens": 200})
    assert usage == Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=800)
    # 200 x 0.28 + 800 x 0.028 + 100 x 0.42 = 56 + 22.4 + 42 = 120.4 → 120
    assert unit("deepseek", "deepseek-chat").cost_micro(usage) == 120


# --- Anthropic ----------------------------------------------------------------------------------

def test_anthropic_cache_read_and_write() -> None:
    message = orjson.loads((DATA / "anthropic" / "message_text.json").read_bytes())
    usage = usage_of(message["usage"])
    # input_tokens exclude cache reads and writes: prompt = 2095 + 100 + 2000
    assert usage == Usage(prompt_tokens=4195, completion_tokens=503, cached_tokens=2000, cache_write_tokens=100)
    # 2095 x 3.00 + 100 x 3.75 (write) + 2000 x 0.30 (read) + 503 x 15.00, each once
    assert unit("anthropic", "claude-sonnet-4-5-20250929").cost_micro(usage) == 6_285 + 375 + 600 + 7_545


def test_anthropic_cache_write_only_and_read_only() -> None:
    price = unit("anthropic", "claude-haiku-4-5")
    write = usage_of({"input_tokens": 21, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 0,
                      "output_tokens": 393})
    read = usage_of({"input_tokens": 21, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1500,
                     "output_tokens": 200})
    assert write is not None and read is not None
    assert price.cost_micro(write) == 21 + 1_875 + 1_965  # 21 x 1 + 1500 x 1.25 + 393 x 5
    assert price.cost_micro(read) == 21 + 150 + 1_000  # 21 x 1 + 1500 x 0.10 + 200 x 5


def test_anthropic_streamed() -> None:
    raw = (DATA / "anthropic" / "stream_text.txt").read_bytes()
    usage = _stream_usage([raw], AnthropicStream(client_wants_usage=False))
    # message_start: input 25 + cache read 10; message_delta: output 15
    assert usage == Usage(prompt_tokens=35, completion_tokens=15, cached_tokens=10)
    assert unit("anthropic", "claude-sonnet-4-5").cost_micro(usage) == 25 * 3 + 3 + 15 * 15


# --- Gemini -------------------------------------------------------------------------------------

def test_gemini_cached_and_thinking_tokens() -> None:
    data = orjson.loads((DATA / "gemini" / "chat_response.json").read_bytes())
    usage = gemini_usage(data["usageMetadata"])
    # thinking tokens are billed as output (and counted among them as reasoning tokens)
    assert usage == Usage(prompt_tokens=8, completion_tokens=42, cached_tokens=4, reasoning_tokens=30)
    # 4 x 0.30 + 4 x 0.03 + 42 x 2.50 = 1.2 + 0.12 + 105 = 106.32 → 106
    assert unit("gemini", "gemini-2.5-flash").cost_micro(usage) == 106


def test_gemini_streamed() -> None:
    raw = (DATA / "gemini" / "stream_text.txt").read_bytes()
    usage = _stream_usage([raw], GeminiStream(client_wants_usage=False))
    assert usage == Usage(prompt_tokens=7, completion_tokens=11, cached_tokens=2)


# --- properties ---------------------------------------------------------------------------------

prices = st.builds(Price, input=st.integers(0, 100_000_000).map(lambda n: n / 1_000_000),
                   output=st.integers(0, 100_000_000).map(lambda n: n / 1_000_000),
                   cached_input=st.none() | st.integers(0, 10_000_000).map(lambda n: n / 1_000_000),
                   cache_write=st.none() | st.integers(0, 10_000_000).map(lambda n: n / 1_000_000))
counts = st.integers(0, 10_000_000)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    cached, write, rest = draw(counts), draw(counts), draw(counts)
    return Usage(prompt_tokens=cached + write + rest, completion_tokens=draw(counts), cached_tokens=cached,
                 cache_write_tokens=write)


def _sum(a: Usage, b: Usage) -> Usage:
    return Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens,
                 a.cached_tokens + b.cached_tokens, a.cache_write_tokens + b.cache_write_tokens)


@given(prices, usages(), usages())
def test_cost_is_additive_and_never_negative(price: Price, a: Usage, b: Usage) -> None:
    p = UnitPrice.from_price(price)
    assert p.cost_pico(a) >= 0 and p.cost_micro(a) >= 0
    # Exact in pico-USD; the one rounding per call moves micro-USD by at most 1 over two calls.
    assert p.cost_pico(_sum(a, b)) == p.cost_pico(a) + p.cost_pico(b)
    assert abs(p.cost_micro(_sum(a, b)) - (p.cost_micro(a) + p.cost_micro(b))) <= 1


@given(prices, st.integers(-10, 10_000), st.integers(-10, 10_000), st.integers(-10, 10_000), st.integers(-10, 100))
def test_inconsistent_counts_never_cost_negative(price: Price, prompt: int, completion: int, cached: int,
                                                 write: int) -> None:
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached, cache_write_tokens=write)
    assert UnitPrice.from_price(price).cost_micro(usage) >= 0


@given(st.integers(0, 10**15))
def test_micro_rounding_is_half_up(pico: int) -> None:
    micro = micro_from_pico(pico)
    assert micro * 1_000_000 - 500_000 <= pico < micro * 1_000_000 + 500_000


# --- table and lookup ---------------------------------------------------------------------------

def test_every_shipped_price_has_a_date_and_a_source() -> None:
    assert {"openai", "azure", "anthropic", "gemini", "bedrock", "mistral", "deepseek", "groq"} <= set(TABLE)
    for section, models in TABLE.items():
        for model, price in models.items():
            assert price.date and price.source, f"{section}/{model}"
            assert price.input > 0 or price.output > 0, f"{section}/{model}"


def test_lookup_accepts_snapshots_but_not_other_models() -> None:
    assert lookup(TABLE, ("openai",), "gpt-4o-mini-2024-07-18") == TABLE["openai"]["gpt-4o-mini"]
    assert lookup(TABLE, ("bedrock",), "us.anthropic.claude-sonnet-4-5-20250929-v1:0") == \
        TABLE["bedrock"]["anthropic.claude-sonnet-4-5"]
    assert lookup(TABLE, ("bedrock",), "amazon.nova-pro-v1:0") == TABLE["bedrock"]["amazon.nova-pro-v1"]
    assert lookup(TABLE, ("openai",), "gpt-5-pro") is None  # not gpt-5's price
    assert lookup(TABLE, ("openai",), "my-finetune") is None


def test_deployment_override_and_reference() -> None:
    own = Deployment(provider="vllm", model="llama", price=Price(input=0.1, output=0.2))
    assert resolve_deployment(TABLE, own, "openai") == own.price
    ref = Deployment(provider="azure-east", model="gpt-4o-prod", price="azure/gpt-4o")
    assert resolve_deployment(TABLE, ref, "azure") == TABLE["azure"]["gpt-4o"]
    by_name = Deployment(provider="groq", model="llama-3.1-8b-instant")
    assert resolve_deployment(TABLE, by_name, "openai") == TABLE["groq"]["llama-3.1-8b-instant"]
    assert resolve_deployment(TABLE, Deployment(provider="x", model="gpt-4o"), "openai") == TABLE["openai"]["gpt-4o"]
    assert resolve_deployment(TABLE, Deployment(provider="x", model="y", price="azure/nope"), "openai") is None


def test_defaults_and_bad_prices() -> None:
    p = UnitPrice.from_price(Price(input=2, output=4))
    assert p.cached_input == p.cache_write == p.input == 2_000_000
    with pytest.raises(PriceError):
        parse_prices({"openai": {"m": {"input": 0.0000001, "output": 1}}})
    with pytest.raises(PriceError):
        parse_prices({"openai": {"m": {"input": 1}}})
    with pytest.raises(PriceError):
        parse_prices(["not", "a", "mapping"])
    assert parse_prices({"s": {"m": {"input": 1, "output": 2, "date": "2026-11-01"}}})["s"]["m"].date == "2026-11-01"


def test_format_usd() -> None:
    assert format_usd(None) == "unknown"
    assert format_usd(0) == "0.000000"
    assert format_usd(7_500) == "0.007500"
    assert format_usd(12_345_678) == "12.345678"
    assert format_usd(-5) == "-0.000005"


def test_missing_price_file_is_an_empty_table(tmp_path: Path) -> None:
    assert load_prices(tmp_path / "nope.yaml") == {}
