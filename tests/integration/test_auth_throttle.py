"""Failed authentications are throttled per client address (429 with Retry-After in the OpenAI shape,
counted in gateway_auth_failures_total), and /metrics may require a bearer token."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest

from tests.support.servers import GatewayServer

KEY = "sk-throttle-test-0123456789"
CONFIG = f"""
auth:
  keys: [{{name: app, key: {KEY}}}]
  throttle: {{failures: 5, window: 1h}}
providers: {{mock: {{type: mock}}}}
models: {{m: {{deployments: [{{provider: mock, model: x}}]}}}}
metrics: {{bearer_token: scrape-secret}}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
SCRAPE = {"authorization": "Bearer scrape-secret"}


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from another loopback address (the throttle counts per address)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def sample(gw: GatewayServer, outcome: str) -> float:
    prefix = f'gateway_auth_failures_total{{outcome="{outcome}"}} '
    with from_address("127.0.0.9") as client:
        text = client.get(gw.url + "/metrics", headers=SCRAPE).text
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.split()[-1])


def test_an_address_failing_too_often_is_refused(make_client: Callable[..., openai.OpenAI]) -> None:
    with GatewayServer(CONFIG) as gw:
        wrong = make_client(gw.url + "/v1", "sk-guess")
        for _ in range(5):
            with pytest.raises(openai.AuthenticationError):
                wrong.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        with pytest.raises(openai.RateLimitError) as refused:
            wrong.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert refused.value.code == "too_many_failed_authentications"
        assert 0 < int(refused.value.response.headers["retry-after"]) <= 3600
        # Refused before the key is looked at: a right key from that address waits as well.
        right = make_client(gw.url + "/v1", KEY)
        with pytest.raises(openai.RateLimitError):
            right.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert sample(gw, "failed") == 5 and sample(gw, "throttled") == 2
        # Other addresses are served, and probes from the refused one still answer.
        with from_address("127.0.0.2") as other:
            assert other.post(gw.url + "/v1/chat/completions", json=CHAT,
                              headers={"authorization": f"Bearer {KEY}"}).status_code == 200
        assert httpx.get(gw.url + "/healthz").status_code == 200


def test_failures_below_the_rate_are_not_throttled(make_client: Callable[..., openai.OpenAI]) -> None:
    with GatewayServer(CONFIG) as gw:
        for _ in range(4):
            r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer nope"})
            assert r.status_code == 401
        assert make_client(gw.url + "/v1", KEY).chat.completions.create(**CHAT).choices  # type: ignore[call-overload]


def test_metrics_needs_its_token() -> None:
    with GatewayServer(CONFIG.replace("failures: 5", "failures: 0")) as gw:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {KEY}"}):
            r = httpx.get(gw.url + "/metrics", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["code"] == "invalid_metrics_token"
        scraped = httpx.get(gw.url + "/metrics", headers=SCRAPE)
        assert scraped.status_code == 200 and "gateway_requests_total" in scraped.text


def test_metrics_is_open_without_a_token() -> None:
    with GatewayServer(CONFIG.replace("metrics: {bearer_token: scrape-secret}", "")) as gw:
        assert httpx.get(gw.url + "/metrics").status_code == 200
