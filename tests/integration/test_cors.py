"""Opt-in CORS (`server.cors`): preflights answered before authentication, CORS headers on answers and
errors for allowed origins only, and nothing of it when the config does not ask."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import GatewayServer

KEY = "sk-cors-test-0123456789"
CONFIG = f"""
auth: {{keys: [{{name: app, key: {KEY}}}]}}
providers: {{mock: {{type: mock}}}}
models: {{m: {{deployments: [{{provider: mock, model: x}}]}}}}
"""
CORS = "server: {cors: {allow_origins: [https://app.example.com], max_age: 120}}\n"
APP = "https://app.example.com"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
PREFLIGHT = {"access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type"}


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    with GatewayServer(CONFIG + CORS) as server:
        yield server


def test_a_preflight_is_answered_without_a_key(gw: GatewayServer) -> None:
    r = httpx.options(gw.url + "/v1/chat/completions", headers={"origin": APP, **PREFLIGHT})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == APP and r.headers["vary"] == "origin"
    assert "POST" in r.headers["access-control-allow-methods"].split(", ")
    assert {"authorization", "content-type"} <= set(r.headers["access-control-allow-headers"].split(", "))
    assert r.headers["access-control-max-age"] == "120"


def test_a_preflight_asking_for_more_is_refused(gw: GatewayServer) -> None:
    r = httpx.options(gw.url + "/v1/chat/completions",
                      headers={"origin": APP, "access-control-request-method": "POST",
                               "access-control-request-headers": "x-not-allowed"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "cors_refused"
    assert "access-control-allow-headers" not in r.headers


def test_answers_and_errors_carry_the_cors_headers(gw: GatewayServer) -> None:
    ok = httpx.post(gw.url + "/v1/chat/completions", json=CHAT,
                    headers={"origin": APP, "authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in ok.headers["access-control-expose-headers"]
    refused = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={"origin": APP})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP


def test_other_origins_get_no_cors_headers(gw: GatewayServer) -> None:
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT,
                   headers={"origin": "https://evil.example", "authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    pre = httpx.options(gw.url + "/v1/chat/completions", headers={"origin": "https://evil.example", **PREFLIGHT})
    assert "access-control-allow-origin" not in pre.headers


def test_cors_is_off_by_default() -> None:
    with GatewayServer(CONFIG) as gw:
        r = httpx.options(gw.url + "/v1/chat/completions", headers={"origin": APP, **PREFLIGHT})
        assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
