"""Azure OpenAI adapter: deployment URLs, credentials, content filtering, streams, errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.config import AzureProvider
from gateway.errors import ContextLengthExceededError, UpstreamError
from gateway.providers import build_provider
from gateway.providers.azure import AzureOpenAIAdapter, AzureStream
from gateway.providers.base import UpstreamRequest
from gateway.providers.credentials import azure
from gateway.schemas import Operation

DATA = Path(__file__).parents[2] / "data" / "azure"
BASE = "https://east.openai.azure.com"


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture
def adapter() -> AzureOpenAIAdapter:
    return AzureOpenAIAdapter(BASE, "2024-10-21")


# -- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("operation", "path"), [
    (Operation.CHAT, "chat/completions"),
    (Operation.COMPLETIONS, "completions"),
    (Operation.EMBEDDINGS, "embeddings"),
])
def test_deployment_urls(adapter: AzureOpenAIAdapter, operation: Operation, path: str) -> None:
    body = {"model": "gpt-4o", "input": "x"} if operation is Operation.EMBEDDINGS else {"model": "gpt-4o"}
    request = adapter.build_request(operation, body, "gpt-4o-prod", stream=False)
    assert request.url == f"{BASE}/openai/deployments/gpt-4o-prod/{path}?api-version=2024-10-21"
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert "api-key" not in request.headers and "authorization" not in request.headers


@pytest.mark.parametrize("base", [BASE, BASE + "/", BASE + "/openai", BASE + "/openai/"])
def test_base_url_forms(base: str) -> None:
    request = AzureOpenAIAdapter(base, "2025-01-01-preview").build_request(
        Operation.CHAT, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "dep", stream=False)
    assert request.url == f"{BASE}/openai/deployments/dep/chat/completions?api-version=2025-01-01-preview"


def test_deployment_name_is_escaped(adapter: AzureOpenAIAdapter) -> None:
    url = adapter.deployment_url(Operation.CHAT, "my dep/../x")
    assert url == f"{BASE}/openai/deployments/my%20dep%2F..%2Fx/chat/completions?api-version=2024-10-21"


def test_body_is_the_openai_body_with_deployment_model(adapter: AzureOpenAIAdapter) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "data_sources": [{"type": "azure_search"}]}
    snapshot = orjson.dumps(body)
    request = adapter.build_request(Operation.CHAT, body, "gpt-4o-prod", stream=True)
    sent = orjson.loads(request.body)
    assert sent["model"] == "gpt-4o-prod"
    assert sent["messages"] == body["messages"]
    assert sent["temperature"] == 0.2
    assert sent["tools"] == body["tools"]
    assert sent["data_sources"] == body["data_sources"]  # Azure extensions pass through
    assert sent["stream_options"] == {"include_usage": True}
    assert request.stream is True
    assert orjson.dumps(body) == snapshot  # never mutated


# -- credentials ----------------------------------------------------------------------------------


def _apply(credentials: object) -> dict[str, str]:
    request = UpstreamRequest("POST", BASE, {}, b"", False)
    credentials.apply(request)  # type: ignore[attr-defined]
    return request.headers


def test_api_key_header() -> None:
    assert _apply(azure(SecretStr("k1"), None)) == {"api-key": "k1"}


def test_entra_token_bearer() -> None:
    assert _apply(azure(None, SecretStr("tok"))) == {"authorization": "Bearer tok"}


def test_api_key_wins_over_token() -> None:
    assert _apply(azure(SecretStr("k1"), SecretStr("tok"))) == {"api-key": "k1"}


def test_registry_builds_azure_provider() -> None:
    cfg = AzureProvider(type="azure", base_url=BASE, api_key=SecretStr("secret-key"),
                        api_version="2024-06-01")
    provider = build_provider("azure-east", cfg)
    assert isinstance(provider.adapter, AzureOpenAIAdapter)
    request = provider.adapter.build_request(
        Operation.CHAT, {"model": "a", "messages": [{"role": "user", "content": "x"}]}, "dep", stream=False)
    provider.credentials.apply(request)
    assert request.headers["api-key"] == "secret-key"
    assert request.url.endswith("/openai/deployments/dep/chat/completions?api-version=2024-06-01")
    assert "secret-key" not in repr(provider.credentials)


# -- responses ------------------------------------------------------------------------------------


def test_response_passes_through_with_usage(adapter: AzureOpenAIAdapter) -> None:
    body = fixture("chat_response.json")
    parsed = adapter.parse_response(Operation.CHAT, 200, body)
    assert parsed.body == body  # no re-encoding
    assert parsed.data["choices"][0]["message"]["content"].startswith("Yes")
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.cached_tokens) == (
        1200, 11, 1024)


def test_output_content_filter_finish_reason_passes_through(adapter: AzureOpenAIAdapter) -> None:
    parsed = adapter.parse_response(Operation.CHAT, 200, fixture("chat_content_filtered.json"))
    assert parsed.data["choices"][0]["finish_reason"] == "content_filter"


# -- streams --------------------------------------------------------------------------------------


def _run(data: bytes, cuts: list[int], wants_usage: bool) -> tuple[bytes, AzureStream]:
    stream = AzureStream(wants_usage)
    out, start = [], 0
    for cut in [*sorted(cuts), len(data)]:
        out.append(stream.feed(data[start:cut]))
        start = cut
    out.append(stream.finish())
    return b"".join(out), stream


def _events(out: bytes) -> list[bytes]:
    return [e[len(b"data: "):] for e in out.split(b"\n\n") if e]


def test_stream_drops_prompt_filter_chunk_and_keeps_the_rest() -> None:
    out, stream = _run(fixture("stream_chat.txt"), [], wants_usage=True)
    events = _events(out)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)  # the annotation chunk is gone
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello there ✓"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 12
    assert stream.done and stream.finish_reason == "stop"
    assert stream.usage is not None and stream.usage.prompt_tokens == 9


def test_stream_without_client_usage_drops_usage_chunk() -> None:
    out, stream = _run(fixture("stream_chat.txt"), [], wants_usage=False)
    chunks = [orjson.loads(e) for e in _events(out)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert stream.usage is not None and stream.usage.completion_tokens == 3


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_stream_split_anywhere_gives_identical_output(data: st.DataObject) -> None:
    raw = fixture("stream_chat.txt")
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    wants = data.draw(st.booleans())
    assert _run(raw, cuts, wants)[0] == _run(raw, [], wants)[0]


def test_stream_error_event_raises_mapped_error() -> None:
    stream = AzureStream(False)
    error = orjson.dumps(orjson.loads(fixture("error_content_filter.json")))
    with pytest.raises(UpstreamError) as info:
        stream.feed(b"data: " + error + b"\n\n")
    assert info.value.code == "content_filter"


def test_stream_cut_before_done_is_not_done() -> None:
    raw = fixture("stream_chat.txt")
    out, stream = _run(raw[: raw.index(b"data: [DONE]")], [], False)
    assert not stream.done and not out.endswith(b"data: [DONE]\n\n")


# -- errors ---------------------------------------------------------------------------------------


def test_content_filter_error(adapter: AzureOpenAIAdapter) -> None:
    error = adapter.parse_error(400, fixture("error_content_filter.json"), {})
    assert isinstance(error, UpstreamError)
    assert error.http_status == 400
    body = error.to_dict()["error"]
    assert body["code"] == "content_filter"
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "prompt"
    assert "content filtering" in body["message"] and "jailbreak, violence" in body["message"]
    assert not error.retryable


def test_content_filter_detected_by_inner_code_only(adapter: AzureOpenAIAdapter) -> None:
    body = orjson.dumps({"error": {"message": "blocked", "code": "BadRequest",
                                   "innererror": {"code": "ResponsibleAIPolicyViolation",
                                                  "content_filter_result": {"hate": {"filtered": True}}}}})
    error = adapter.parse_error(400, body, {})
    assert error.code == "content_filter" and "hate" in error.message


def test_rate_limit_retry_after(adapter: AzureOpenAIAdapter) -> None:
    error = adapter.parse_error(429, fixture("error_rate_limit.json"), {"retry-after": "6"})
    assert isinstance(error, UpstreamError)
    assert error.http_status == 429 and error.retryable
    assert error.retry_after == 6.0 and error.headers["retry-after"] == "6"
    assert "exceeded token rate limit" in error.message


def test_rate_limit_retry_after_ms_only(adapter: AzureOpenAIAdapter) -> None:
    error = adapter.parse_error(429, fixture("error_rate_limit.json"), {"retry-after-ms": "1500"})
    assert isinstance(error, UpstreamError)
    assert error.retry_after == 1.5
    assert error.headers["retry-after"] == "2"


def test_context_length(adapter: AzureOpenAIAdapter) -> None:
    error = adapter.parse_error(400, fixture("error_context_length.json"), {})
    assert isinstance(error, ContextLengthExceededError)
    assert error.code == "context_length_exceeded" and "maximum context length" in error.message


@pytest.mark.parametrize(("status", "name", "code"), [
    (401, "error_unauthorized.json", "401"),
    (404, "error_deployment_not_found.json", "DeploymentNotFound"),
])
def test_other_errors_keep_status_and_message(adapter: AzureOpenAIAdapter, status: int, name: str,
                                              code: str) -> None:
    error = adapter.parse_error(status, fixture(name), {})
    assert isinstance(error, UpstreamError)
    assert error.http_status == status and error.code == code
    assert error.message == orjson.loads(fixture(name))["error"]["message"]
    assert error.provider == "azure"


def test_server_error_without_json(adapter: AzureOpenAIAdapter) -> None:
    error = adapter.parse_error(503, b"<html>Service Unavailable</html>", {})
    assert error.http_status == 503 and error.retryable
