"""The mock provider's `lorem` model is bounded: a huge `max_tokens` gets at most MAX_LOREM_TOKENS
words, cut with finish_reason "length", streamed or not, through the real app on the demo-style
config (no key needed)."""

from __future__ import annotations

import json

import httpx

from gateway.providers.mock import MAX_CHOICES, MAX_LOREM_TOKENS
from tests.support.servers import GatewayServer

CONFIG = """
auth: {required: false}
providers: {mock: {type: mock}}
models: {lorem: {deployments: [{provider: mock, model: lorem}]}}
"""
HUGE = 20_000_000


def test_a_huge_max_tokens_is_cut_to_the_bound() -> None:
    body = {"model": "lorem", "max_tokens": HUGE, "messages": [{"role": "user", "content": "hi"}]}
    with GatewayServer(CONFIG) as gw, httpx.Client(base_url=gw.url, timeout=30) as client:
        whole = client.post("/v1/chat/completions", json=body).json()
        streamed = client.post("/v1/chat/completions", json={**body, "stream": True,
                                                             "stream_options": {"include_usage": True}})
        assert client.get("/healthz").status_code == 200
    assert whole["usage"]["completion_tokens"] == MAX_LOREM_TOKENS
    assert whole["choices"][0]["finish_reason"] == "length"
    chunks = [json.loads(e.removeprefix("data: ")) for e in streamed.text.split("\n\n")
              if e.startswith("data: {")]
    assert chunks[-1]["usage"]["completion_tokens"] == MAX_LOREM_TOKENS
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"


def test_a_huge_n_is_cut_to_the_bound() -> None:
    body = {"model": "lorem", "n": 100_000, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    with GatewayServer(CONFIG) as gw:
        answer = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30).json()
    assert len(answer["choices"]) == MAX_CHOICES
