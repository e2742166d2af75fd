"""A key's model allow-list holds through fallbacks: `fallbacks` and `context_window_fallbacks` skip
aliases the key may not use, and a budget reservation is priced on the aliases the call may really
reach (its own and the fallbacks its key may use), through the real app."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from tests.support.openai_fake import openai_echo, openai_error
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

LIMITED = "sk-limited-key-0000000000"
TRUSTED = "sk-trusted-key-1111111111"


def failing(request: Recorded) -> Reply:
    """Too long a prompt is refused as context_length_exceeded; otherwise the provider is down."""
    if "long" in json.dumps(request.json["messages"]):
        return openai_error(400, "This model's maximum context length is 8 tokens.", code="context_length_exceeded")
    return openai_error(500, "The server had an error.", type_="server_error")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[GatewayServer, FakeUpstream]]:
    with FakeUpstream(failing) as down, FakeUpstream(openai_echo) as secret:
        config = {
            "auth": {"required": True, "keys": [{"name": "limited", "key": LIMITED, "models": ["up-fb"]},
                                                {"name": "trusted", "key": TRUSTED, "models": ["up-fb", "secret"]}]},
            "providers": {"down": {"type": "openai", "base_url": f"{down.url}/v1"},
                          "secret": {"type": "openai", "base_url": f"{secret.url}/v1"}},
            "models": {
                "up-fb": {"deployments": [{"provider": "down", "model": "small"}], "retries": 0,
                          "fallbacks": ["secret"], "context_window_fallbacks": ["secret"]},
                "secret": {"deployments": [{"provider": "secret", "model": "big"}]},
            },
        }
        with GatewayServer(json.dumps(config)) as gw:
            yield gw, secret


def ask(gw: GatewayServer, key: str, text: str) -> httpx.Response:
    body = {"model": "up-fb", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"},
                      timeout=10)


@pytest.mark.parametrize(("text", "status"), [("hello", 500), ("a long long prompt", 400)],
                         ids=["fallbacks", "context_window_fallbacks"])
def test_a_fallback_the_key_may_not_use_is_skipped(servers: tuple[GatewayServer, FakeUpstream], text: str,
                                                    status: int, caplog: pytest.LogCaptureFixture) -> None:
    gw, secret = servers
    before = len(secret.requests)
    with caplog.at_level(logging.INFO, logger="gateway.router"):
        answer = ask(gw, LIMITED, text)
    assert answer.status_code == status
    assert len(secret.requests) == before, "the forbidden alias was never called"
    skipped = [r for r in caplog.records if r.getMessage() == "fallback skipped: the key may not use it"]
    assert skipped and skipped[-1].fields["skipped"] == ["secret"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["hello", "a long long prompt"])
def test_a_key_allowed_the_fallback_still_reaches_it(servers: tuple[GatewayServer, FakeUpstream], text: str) -> None:
    gw, secret = servers
    before = len(secret.requests)
    answer = ask(gw, TRUSTED, text)
    assert answer.status_code == 200
    assert answer.headers["x-gateway-fallback"] == "secret"
    assert len(secret.requests) == before + 1


def test_a_reservation_is_priced_on_the_fallbacks_the_key_may_use() -> None:
    """cheap → fallbacks [dear, secret]. At max_tokens 1000 a call reserves $0.001 on cheap, $1 on
    dear and $100 on secret: a key allowed [cheap, dear] with $0.50 left is refused (dear may run);
    one with $10 is admitted (secret may not run for it, so its price does not count)."""
    def key(name: str, usd: float) -> dict[str, object]:
        return {"name": name, "key": f"sk-{name}-budget-key-000000", "models": ["cheap", "dear"],
                "budget": {"usd": usd}}

    with FakeUpstream(openai_echo) as up:
        deployment = {"provider": "up", "model": "m"}
        config = {
            "auth": {"required": True, "keys": [key("capped", 0.5), key("roomy", 10)]},
            "providers": {"up": {"type": "openai", "base_url": f"{up.url}/v1"}},
            "models": {
                "cheap": {"deployments": [{**deployment, "price": {"input": 0, "output": 1}}],
                          "fallbacks": ["dear", "secret"]},
                "dear": {"deployments": [{**deployment, "name": "dear", "price": {"input": 0, "output": 1000}}]},
                "secret": {"deployments": [{**deployment, "name": "secret",
                                            "price": {"input": 0, "output": 100000}}]},
            },
        }
        with GatewayServer(json.dumps(config)) as gw:
            def call(name: str) -> httpx.Response:
                body = {"model": "cheap", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}
                return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=10,
                                  headers={"authorization": f"Bearer sk-{name}-budget-key-000000"})

            refused, admitted = call("capped"), call("roomy")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert admitted.status_code == 200
