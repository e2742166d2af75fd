"""One structured access-log line per request, through the real app: request id, key name, alias,
deployment, status, latency, overhead, tokens, cost, cache, attempts; never a key or a prompt
(prompts only with logging.log_prompts); switched off by logging.access_log: false."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest

from gateway.logs import JsonFormatter, TextFormatter
from tests.support.servers import GatewayServer

SECRET = "sk-app-accesslog-secret"
PROMPT = "my very private prompt text"

CONFIG = f"""
auth:
  required: true
  keys: [{{name: app, team: search, key: {SECRET}}}]
providers: {{mock: {{type: mock}}}}
models:
  demo:
    deployments: [{{provider: mock, model: echo, name: dep-a, price: {{input: 1, output: 2}}}}]
    cache: {{ttl: 1h}}
logging: {{access_log: true, log_prompts: false}}
"""
HEADERS = {"authorization": f"Bearer {SECRET}"}


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.access"]


def send_all(gw: GatewayServer) -> list[httpx.Response]:
    body = {"model": "demo", "messages": [{"role": "user", "content": PROMPT}]}
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        answers = [client.post("/v1/chat/completions", json=body, headers=HEADERS),
                   client.post("/v1/chat/completions", json=body, headers=HEADERS)]  # a cache hit
        streamed = client.post("/v1/chat/completions", json={**body, "stream": True}, headers=HEADERS)
        answers.append(streamed)
        answers.append(client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-nope"}))
        answers.append(client.post("/v1/chat/completions", json={"model": "demo"}, headers=HEADERS))
        answers.append(client.post("/v1/chat/completions", json=body,
                                   headers={**HEADERS, "x-request-id": "client-chosen-id-1"}))
    return answers


def test_one_line_per_request_with_the_fields_and_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.access"), GatewayServer(CONFIG) as gw:
        answers = send_all(gw)
    records = access_records(caplog)
    assert len(records) == len(answers)
    by_id = {r.fields["request_id"]: r for r in records}  # type: ignore[attr-defined]
    assert set(by_id) == {a.headers["x-request-id"] for a in answers}
    assert "client-chosen-id-1" in by_id
    first = by_id[answers[0].headers["x-request-id"]].fields  # type: ignore[attr-defined]
    assert first["status"] == 200 and first["key"] == "app" and first["team"] == "search"
    assert first["alias"] == "demo" and first["deployment"] == "dep-a" and first["attempts"] == 1
    assert first["prompt_tokens"] > 0 and first["completion_tokens"] > 0 and first["cost_usd"] > 0
    assert first["latency_ms"] >= first["overhead_ms"] >= 0 and first["cache"] == "MISS"
    hit = by_id[answers[1].headers["x-request-id"]].fields  # type: ignore[attr-defined]
    assert hit["cache"] == "HIT" and hit["attempts"] == 0 and hit["cost_usd"] == 0
    stream = by_id[answers[2].headers["x-request-id"]].fields  # type: ignore[attr-defined]
    assert stream["stream"] is True and stream["status"] == 200 and stream["completion_tokens"] > 0
    refused = by_id[answers[3].headers["x-request-id"]].fields  # type: ignore[attr-defined]
    # Refused before its body was read: nothing the anonymous client sent (its model) is logged.
    assert refused["status"] == 401 and refused["error"] == "invalid_request_error" and "alias" not in refused
    invalid = by_id[answers[4].headers["x-request-id"]].fields  # type: ignore[attr-defined]
    assert invalid["status"] == 400 and "key" not in invalid  # refused before a context existed
    formatter = JsonFormatter()
    for record in records:
        line = formatter.format(record)
        assert SECRET not in line and PROMPT not in line and "sk-nope" not in line
        assert orjson.loads(line)["msg"] == "request"
    text = TextFormatter("%(message)s").format(records[0])
    assert text.startswith("request request_id=")


def test_prompts_only_when_enabled(caplog: pytest.LogCaptureFixture) -> None:
    config = CONFIG.replace("log_prompts: false", "log_prompts: true")
    with caplog.at_level(logging.INFO, logger="gateway.access"), GatewayServer(config) as gw:
        body = {"model": "demo", "messages": [{"role": "user", "content": PROMPT}]}
        assert httpx.post(gw.url + "/v1/chat/completions", json=body, headers=HEADERS).status_code == 200
    (record,) = access_records(caplog)
    assert record.fields["messages"] == body["messages"]  # type: ignore[attr-defined]
    assert SECRET not in JsonFormatter().format(record)


def test_access_log_off(caplog: pytest.LogCaptureFixture) -> None:
    config = CONFIG.replace("access_log: true", "access_log: false")
    with caplog.at_level(logging.INFO, logger="gateway.access"), GatewayServer(config) as gw:
        body = {"model": "demo", "messages": [{"role": "user", "content": PROMPT}]}
        assert httpx.post(gw.url + "/v1/chat/completions", json=body, headers=HEADERS).status_code == 200
    assert access_records(caplog) == []


def test_early_refusals_are_counted_without_an_alias() -> None:
    with GatewayServer(CONFIG) as gw:
        body = {"model": "client-made-up-alias", "messages": [{"role": "user", "content": "x"}]}
        assert httpx.post(gw.url + "/v1/chat/completions", json=body, headers=HEADERS).status_code == 404
        assert httpx.post(gw.url + "/v1/chat/completions", json=body).status_code == 401
        text = httpx.get(gw.url + "/metrics").text
    assert 'gateway_requests_total{alias="",deployment="",provider="",status_class="4xx"} 2.0' in text
    assert "client-made-up-alias" not in text
