"""Same-dialect passthrough (Anthropic Messages to an Anthropic deployment) through the real app:
the provider's own error answers and error events reach the client without the config's secrets,
and keep-alives before the first event do not commit a stream (it still falls back)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded-traffic" / "anthropic"
PROVIDER_KEY = "sk-ant-passthrough-secret-0123456789"
KEY = "sk-gw-passthrough-0123456789abcdef"


def recorded_stream() -> bytes:
    data = json.loads((RECORDED / "stream_prefill_stop_sequence.json").read_text())
    body: bytes = data["response"]["body"].encode()
    return body


def first_event(stream: bytes) -> bytes:
    return stream[: stream.index(b"\n\n") + 2]


def leaky(request: Recorded) -> Reply:
    """Quotes the request's headers in an error: a whole answer, or an event after the stream began."""
    error = {"type": "error", "error": {"type": "api_error", "message": f"proxy saw {json.dumps(request.headers)}"}}
    if not request.json.get("stream"):
        return Reply(status=500, json=error)
    event = b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"
    return Reply(chunks=[first_event(recorded_stream()), event], chunk_delay=0.3, content_type="text/event-stream")


def gateway_config(models: dict[str, object], providers: dict[str, object]) -> str:
    return json.dumps({"auth": {"keys": [{"name": "app", "key": KEY}]}, "providers": providers, "models": models})


def ask(gw: GatewayServer, model: str, *, stream: bool) -> httpx.Response:
    body = {"model": model, "max_tokens": 20, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{gw.url}/v1/messages", json=body, timeout=20, headers={"x-api-key": KEY})


def test_the_providers_own_errors_reach_the_client_without_secrets() -> None:
    with FakeUpstream(leaky) as up:
        config = gateway_config({"claude": {"deployments": [{"provider": "ant", "model": "c"}], "retries": 0}},
                                {"ant": {"type": "anthropic", "base_url": up.url, "api_key": PROVIDER_KEY}})
        with GatewayServer(config) as gw:
            whole, streamed = ask(gw, "claude", stream=False), ask(gw, "claude", stream=True)
    assert whole.status_code == 500 and "proxy saw" in whole.text
    assert streamed.status_code == 200 and "proxy saw" in streamed.text
    for answer in (whole, streamed):
        assert PROVIDER_KEY not in answer.text and "[REDACTED]" in answer.text


def test_keepalives_before_the_first_event_leave_the_stream_free_to_fall_back() -> None:
    def queueing(request: Recorded) -> Reply:
        return Reply(chunks=[b": PROCESSING\n\n", b"event: ping\n"], chunk_delay=8.0, content_type="text/event-stream")

    def healthy(request: Recorded) -> Reply:
        return Reply(chunks=[recorded_stream()], content_type="text/event-stream")

    with FakeUpstream(queueing) as slow, FakeUpstream(healthy) as spare:
        config = gateway_config(
            {"claude": {"strategy": "priority", "ttft_timeout": "500ms", "retries": 1,
                        "deployments": [{"provider": "slow", "model": "c", "name": "slow"},
                                        {"provider": "spare", "model": "c", "name": "spare", "priority": 1}]}},
            {"slow": {"type": "anthropic", "base_url": slow.url, "api_key": PROVIDER_KEY},
             "spare": {"type": "anthropic", "base_url": spare.url, "api_key": PROVIDER_KEY}})
        with GatewayServer(config) as gw:
            answer = ask(gw, "claude", stream=True)
    assert answer.headers["x-gateway-deployment"] == "spare"
    assert answer.content == recorded_stream()
