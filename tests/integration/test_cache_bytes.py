"""The embedded store's response cache is bounded by bytes (store.cache_max_bytes), the least
recently used entries going first, through the real app."""

from __future__ import annotations

import json

import httpx

from tests.support.openai_fake import openai_echo
from tests.support.servers import FakeUpstream, GatewayServer

# Each answer echoes its ~4 KB prompt: about four entries fit in 20 KB.
BOUND = 20_000


def prompt(name: str) -> str:
    return f"{name} " + "lorem " * 680


def test_the_cache_keeps_the_recently_used_within_its_bytes() -> None:
    with FakeUpstream(openai_echo) as up:
        config = {"auth": {"required": False}, "store": {"cache_max_bytes": BOUND},
                  "providers": {"up": {"type": "openai", "base_url": f"{up.url}/v1"}},
                  "cache": {"ttl": "1h"},
                  "models": {"m": {"deployments": [{"provider": "up", "model": "x"}]}}}
        with GatewayServer(json.dumps(config)) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
            def ask(name: str) -> str:
                body = {"model": "m", "messages": [{"role": "user", "content": prompt(name)}]}
                answer = client.post("/v1/chat/completions", json=body)
                assert answer.status_code == 200
                return answer.headers["x-gateway-cache"]

            assert [ask(n) for n in "abc"] == ["MISS"] * 3
            assert ask("a") == "HIT"  # a is now the most recently used
            assert [ask(n) for n in "de"] == ["MISS"] * 2  # past the bound: the least recently used go
            assert ask("a") == "HIT"
            assert ask("b") == "MISS"
            assert len(up.requests) == 6
