"""Translation through the real app: the official `openai` SDK → the gateway (uvicorn) → a loopback
upstream answering in each provider's own wire format (recorded answers), checking what the provider
received and what the client got: reasoning effort and reasoning sent back, documents, tool types,
request rules OpenAI enforces, and the mock provider's `n` and base64 embeddings."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.openai_fake import openai_echo
from tests.support.recorded import Recording, recordings
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

pytest.importorskip("botocore")

ANSWERS = {r.name: r for r in recordings()}
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4 a tiny document").decode()

CONFIG = """
auth: {{required: false}}
providers:
  anthropic: {{type: anthropic, base_url: "{url}", api_key: sk-ant}}
  gemini: {{type: gemini, base_url: "{url}", api_key: AIza}}
  bedrock: {{type: bedrock, base_url: "{url}", access_key_id: AKIATEST, secret_access_key: secret}}
  compatible: {{type: openai, base_url: "{url}/v1", api_key: sk-up}}
  mock: {{type: mock}}
models:
  claude: {{deployments: [{{provider: anthropic, model: claude-sonnet-4-5}}], retries: 0}}
  claude-lenient:
    deployments: [{{provider: anthropic, model: claude-sonnet-4-5}}]
    drop_unsupported_params: true
    retries: 0
  gemini-2.5: {{deployments: [{{provider: gemini, model: gemini-2.5-flash}}], retries: 0}}
  gemini-3: {{deployments: [{{provider: gemini, model: gemini-3-pro-preview}}], retries: 0}}
  gemini-2.0: {{deployments: [{{provider: gemini, model: gemini-2.0-flash}}], retries: 0}}
  bedrock-claude:
    deployments: [{{provider: bedrock, model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}}]
    retries: 0
  bedrock-nova: {{deployments: [{{provider: bedrock, model: "us.amazon.nova-2-lite-v1:0"}}], retries: 0}}
  compatible: {{deployments: [{{provider: compatible, model: gpt-5}}], retries: 0}}
  mock: {{deployments: [{{provider: mock, model: echo}}]}}
"""


def answer(request: Recorded) -> Reply:
    """Each provider answers in its own format (a recorded answer), whatever was asked."""
    if request.path.endswith("/v1/messages"):
        return ANSWERS["anthropic/text_system"].reply()
    if request.path.endswith(":generateContent"):
        return ANSWERS["gemini/max_tokens"].reply()
    if request.path.endswith("/converse"):
        return ANSWERS["bedrock/max_tokens"].reply()
    return openai_echo(request)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(answer) as server:
        yield server


@pytest.fixture(scope="module")
def gateway_url(upstream: FakeUpstream) -> Iterator[str]:
    with GatewayServer(CONFIG.format(url=upstream.url)) as gateway:
        yield gateway.url + "/v1"


@pytest.fixture
def sdk(gateway_url: str, make_client: Callable[..., openai.OpenAI]) -> openai.OpenAI:
    return make_client(gateway_url)


def sent(sdk: openai.OpenAI, upstream: FakeUpstream, model: str, **request: Any) -> dict[str, Any]:
    """Make the call; the body the provider received."""
    request.setdefault("messages", [{"role": "user", "content": "Hello"}])
    sdk.chat.completions.create(model=model, **request)
    body: dict[str, Any] = upstream.requests[-1].json
    return body


def refused(sdk: openai.OpenAI, model: str, **request: Any) -> openai.BadRequestError:
    request.setdefault("messages", [{"role": "user", "content": "Hello"}])
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model=model, **request)
    return info.value


def param(error: openai.BadRequestError) -> str | None:
    body = error.body
    return body.get("param") if isinstance(body, dict) else None


# --- reasoning effort ------------------------------------------------------------------------------


def test_reasoning_effort_is_anthropic_extended_thinking(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    body = sent(sdk, upstream, "claude", reasoning_effort="medium", max_completion_tokens=20000)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] == 20000
    # The budget stays under the answer's limit, which counts thinking too.
    assert sent(sdk, upstream, "claude", reasoning_effort="xhigh", max_tokens=5000)["thinking"]["budget_tokens"] == 4999
    assert "thinking" not in sent(sdk, upstream, "claude", reasoning_effort="none")


def test_anthropic_thinking_refuses_what_it_cannot_combine(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    assert param(refused(sdk, "claude", reasoning_effort="low", temperature=0.2)) == "temperature"
    assert param(refused(sdk, "claude", reasoning_effort="low", max_tokens=1000)) == "max_tokens"
    assert param(refused(sdk, "claude", reasoning_effort="loud")) == "reasoning_effort"
    body = sent(sdk, upstream, "claude-lenient", reasoning_effort="low", temperature=0.2)
    assert "temperature" not in body and body["thinking"]["budget_tokens"] == 2048


def test_reasoning_effort_is_gemini_thinking_config(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    config = sent(sdk, upstream, "gemini-2.5", reasoning_effort="low")["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 2048, "includeThoughts": True}
    config = sent(sdk, upstream, "gemini-2.5", reasoning_effort="none")["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 0}
    config = sent(sdk, upstream, "gemini-3", reasoning_effort="high")["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingLevel": "high", "includeThoughts": True}
    assert param(refused(sdk, "gemini-2.0", reasoning_effort="high")) == "reasoning_effort"


def test_reasoning_effort_on_bedrock(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    body = sent(sdk, upstream, "bedrock-claude", reasoning_effort="minimal", max_tokens=4000)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert body["inferenceConfig"] == {"maxTokens": 4000}
    body = sent(sdk, upstream, "bedrock-nova", reasoning_effort="medium")
    assert body["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "medium"}}


# --- reasoning sent back on the next turn -----------------------------------------------------------

THINKING = [{"type": "thinking", "thinking": "The user greets me.", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque"}]
TURNS: list[Any] = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "reasoning_content": "The user greets me.", "thinking_blocks": THINKING,
     "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"},
                     "extra_content": {"google": {"thought_signature": "gemini-sig"}}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]
WEATHER = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]


def test_reasoning_goes_back_to_each_provider(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    anthropic = sent(sdk, upstream, "claude", messages=TURNS, tools=WEATHER)["messages"][1]["content"]
    assert anthropic[:2] == THINKING and anthropic[2]["type"] == "tool_use"
    gemini = sent(sdk, upstream, "gemini-2.5", messages=TURNS, tools=WEATHER)["contents"][1]["parts"]
    assert gemini == [{"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": "gemini-sig"}]
    bedrock = sent(sdk, upstream, "bedrock-claude", messages=TURNS, tools=WEATHER)["messages"][1]["content"]
    assert bedrock[:2] == [
        {"reasoningContent": {"reasoningText": {"text": "The user greets me.", "signature": "sig-1"}}},
        {"reasoningContent": {"redactedContent": "opaque"}}]
    compatible = sent(sdk, upstream, "compatible", messages=TURNS, tools=WEATHER)["messages"][1]
    assert "thinking_blocks" not in compatible and compatible["reasoning_content"] == "The user greets me."


# --- documents -------------------------------------------------------------------------------------

WITH_PDF = [{"role": "user", "content": [
    {"type": "text", "text": "Summarise this."},
    {"type": "file", "file": {"file_data": PDF, "filename": "report.pdf"}}]}]


def test_pdf_reaches_each_provider_as_its_document(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    data = PDF.split(",", 1)[1]
    anthropic = sent(sdk, upstream, "claude", messages=WITH_PDF)["messages"][0]["content"]
    assert anthropic[1] == {"type": "document", "title": "report.pdf",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": data}}
    gemini = sent(sdk, upstream, "gemini-2.5", messages=WITH_PDF)["contents"][0]["parts"]
    assert gemini[1] == {"inlineData": {"mimeType": "application/pdf", "data": data}}
    bedrock = sent(sdk, upstream, "bedrock-claude", messages=WITH_PDF)["messages"][0]["content"]
    assert bedrock[1] == {"document": {"format": "pdf", "name": "report", "source": {"bytes": data}}}


# --- tool types ------------------------------------------------------------------------------------

CUSTOM = [{"type": "custom", "custom": {"name": "code_exec", "description": "Runs Python."}},
          {"type": "openrouter:web_search"}, *WEATHER]


def test_tool_types_the_gateway_does_not_read_pass_to_compatible_servers(
        sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    assert sent(sdk, upstream, "compatible", tools=CUSTOM)["tools"] == CUSTOM


def test_providers_without_the_tool_type_name_it(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    for alias in ("claude", "gemini-2.5", "bedrock-claude"):
        error = refused(sdk, alias, tools=CUSTOM)
        assert param(error) == "tools[0].type" and "custom" in error.message
    assert [t["name"] for t in sent(sdk, upstream, "claude-lenient", tools=CUSTOM)["tools"]] == ["weather"]


# --- request rules ---------------------------------------------------------------------------------


def test_stream_options_need_stream(sdk: openai.OpenAI) -> None:
    error = refused(sdk, "mock", stream_options={"include_usage": True})
    assert param(error) == "stream_options" and "only allowed when 'stream' is enabled" in error.message


def test_five_stop_sequences_say_so(sdk: openai.OpenAI) -> None:
    error = refused(sdk, "mock", stop=["a", "b", "c", "d", "e"])
    assert param(error) == "stop" and "at most 4 stop sequences are allowed, got 5" in error.message


# --- the mock provider -----------------------------------------------------------------------------


def test_mock_answers_n_choices(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi there"}], n=3)
    assert [(c.index, c.message.content) for c in completion.choices] == [(i, "hi there") for i in range(3)]
    assert completion.usage is not None and completion.usage.completion_tokens == 6
    texts: dict[int, str] = {}
    for chunk in sdk.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi there"}],
                                             n=2, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "hi there", 1: "hi there"}


def test_mock_embeddings_in_base64(sdk: openai.OpenAI, gateway_url: str) -> None:
    floats = sdk.embeddings.create(model="mock", input="hello", encoding_format="float").data[0].embedding
    raw = httpx.post(gateway_url + "/embeddings", json={"model": "mock", "input": "hello",
                                                        "encoding_format": "base64"}).json()
    encoded = raw["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats, rel=1e-6)
    # The SDK asks for base64 itself when not told, and decodes it.
    assert sdk.embeddings.create(model="mock", input="hello").data[0].embedding == pytest.approx(floats, rel=1e-6)


def test_answers_keep_reasoning_for_the_client(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    recorded: Recording = ANSWERS["anthropic/thinking"]
    previous = upstream.handler
    upstream.handler = lambda request: recorded.reply()
    try:
        message = sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                              reasoning_effort="low").choices[0].message
    finally:
        upstream.handler = previous
    extra = message.model_extra or {}
    thinking = json.loads(recorded.body)["content"][0]
    assert extra["reasoning_content"] == thinking["thinking"]
    assert extra["thinking_blocks"] == [thinking]
