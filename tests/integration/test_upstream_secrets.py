"""No configured secret reaches a client or a log line through upstream error text, whatever the
status: a provider (or a proxy in front of it) that echoes the request's headers in a JSON error, a
plain-text body or an error event inside a stream is answered with the secrets redacted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from tests.support.openai_fake import chat_chunks
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, sse_lines

PROVIDER_KEY = "sk-provider-secret-0123456789abcdef"
HEADER_SECRET = "extra-header-secret-value-4242"
BEARER_TOKEN = "proxy-bearer-token-77777777"
MASTER_KEY = "master-key-secret-31337-xyz"
APP_KEY = "sk-app-gateway-key-secret-9999"
# Secrets the upstream never receives, echoed anyway (a proxy that logs its environment): the
# redactor knows every secret of the config, not only the ones it sent.
ENVIRONMENT = f"master={MASTER_KEY} app={APP_KEY}"
ALL = (PROVIDER_KEY, HEADER_SECRET, BEARER_TOKEN, MASTER_KEY, APP_KEY)


def echo_headers(request: Recorded) -> Reply:
    """Every answer quotes the request's headers; the path of the model says how."""
    quoted = json.dumps(request.headers) + " " + ENVIRONMENT
    model = request.json["model"]
    if model.startswith("json-"):
        status = int(model.removeprefix("json-"))
        return Reply(status=status, json={"error": {"message": f"bad request, you sent {quoted}",
                                                    "type": "invalid_request_error", "param": None, "code": None}})
    if model == "text":
        # A secret straddling the 200-character cut the gateway applies to a non-JSON body.
        padding = "x" * (200 - len("upstream proxy failed: ") - 20)
        return Reply(status=500, body=f"upstream proxy failed: {padding}{PROVIDER_KEY} {quoted}".encode(),
                     content_type="text/plain")
    if model == "auth":
        return Reply(status=401, json={"error": {"message": f"Incorrect API key provided: {PROVIDER_KEY}",
                                                 "type": "invalid_request_error", "code": "invalid_api_key"}})
    error = {"error": {"message": f"stream broke: {quoted}", "type": "server_error", "param": None, "code": None}}
    events = chat_chunks("one two", model, include_usage=False)[:2] if model == "stream-mid" else []
    return Reply(chunks=sse_lines([*events, error], done=False))


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    with FakeUpstream(echo_headers) as up:
        models = {name: {"deployments": [{"provider": "echo", "model": name}], "retries": 0}
                  for name in ("json-400", "json-404", "json-500", "text", "auth", "stream-mid", "stream-first")}
        config = {
            "auth": {"required": True, "master_key": MASTER_KEY, "keys": [{"name": "app", "key": APP_KEY}]},
            "providers": {"echo": {"type": "openai", "base_url": f"{up.url}/v1", "api_key": PROVIDER_KEY,
                                   "headers": {"x-extra": HEADER_SECRET,
                                               "x-proxy-authorization": f"Bearer {BEARER_TOKEN}"}}},
            "models": models,
        }
        with GatewayServer(json.dumps(config)) as server:
            yield server


def call(gw: GatewayServer, model: str, *, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {APP_KEY}"})


def assert_clean(text: str) -> None:
    leaked = [secret for secret in ALL if secret in text]
    assert not leaked, f"leaked {leaked} in {text!r}"
    # Nor the first half of one (a cut that fell inside a secret).
    assert PROVIDER_KEY[:16] not in text


@pytest.mark.parametrize("status", [400, 404, 500])
def test_a_json_error_that_quotes_the_request_is_redacted(gw: GatewayServer, status: int) -> None:
    answer = call(gw, f"json-{status}")
    assert answer.status_code == status
    message = answer.json()["error"]["message"]
    assert "[REDACTED]" in message and "bad request, you sent" in message
    assert_clean(answer.text)


def test_a_plain_text_error_body_is_redacted_before_it_is_cut(gw: GatewayServer) -> None:
    answer = call(gw, "text")
    assert answer.status_code == 500
    assert "upstream proxy failed" in answer.json()["error"]["message"]
    assert_clean(answer.text)


@pytest.mark.parametrize("model", ["stream-mid", "stream-first"])
def test_an_error_event_inside_a_stream_is_redacted(gw: GatewayServer, model: str) -> None:
    answer = call(gw, model, stream=True)
    assert "stream broke" in answer.text
    assert "[REDACTED]" in answer.text
    assert_clean(answer.text)


def test_the_providers_refusal_is_logged_without_the_key(gw: GatewayServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.router"):
        answer = call(gw, "auth")
    assert answer.status_code == 502
    assert_clean(answer.text)
    logged = [r for r in caplog.records if r.name == "gateway.router"]
    assert logged, "the refusal is logged"
    for record in logged:
        assert_clean(record.getMessage() + json.dumps(getattr(record, "fields", {})))
