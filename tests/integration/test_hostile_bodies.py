"""Bodies of every shape, right and wrong, sent to the real app in each client API: none gets a 5xx,
and every refusal is a 400 in the client's own error shape (OpenAI's `{"error": {...}}`, Anthropic's
`{"type": "error", ...}`). To the built-in mock streamed and not; translated to Anthropic and Gemini
(loopback fakes answering with recorded answers) not streamed, so what each provider's request builder
gets from a translation that took the body is exercised too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.bodies import chat_body, messages_body, responses_body, with_model
from tests.support.recorded import recordings
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

CONFIG = """
auth: {{required: false}}
providers:
  mock: {{type: mock}}
  anthropic: {{type: anthropic, base_url: "{url}", api_key: sk-ant}}
  gemini: {{type: gemini, base_url: "{url}", api_key: AIza}}
models:
  m: {{deployments: [{{provider: mock, model: x}}]}}
  claude: {{deployments: [{{provider: anthropic, model: claude-sonnet-4-5}}], retries: 0}}
  gemini: {{deployments: [{{provider: gemini, model: gemini-2.5-flash}}], retries: 0}}
"""
ANSWERS = {r.name: r for r in recordings()}

# What the last event of a stream that ended as a whole answer (not a failure) holds, in each API.
ENDS = {"/v1/responses": b'"type":"response.completed"', "/v1/messages": b'{"type":"message_stop"}',
        "/v1/chat/completions": b"data: [DONE]"}


def calls(model: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    return st.one_of(st.tuples(st.just("/v1/responses"), with_model(responses_body, model)),
                     st.tuples(st.just("/v1/messages"), with_model(messages_body, model)),
                     st.tuples(st.just("/v1/chat/completions"), with_model(chat_body, model)))


def answer(request: Recorded) -> Reply:
    """Each provider answers in its own format (a recorded answer), whatever was asked."""
    if request.path.endswith("/v1/messages"):
        return ANSWERS["anthropic/text_system"].reply()
    return ANSWERS["gemini/max_tokens"].reply()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with FakeUpstream(answer) as upstream, GatewayServer(CONFIG.format(url=upstream.url)) as gw, \
            httpx.Client(base_url=gw.url, timeout=30) as http:
        yield http


def check(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    answer = client.post(path, content=orjson.dumps(body), headers={"content-type": "application/json"})
    assert answer.status_code < 500, answer.text
    if answer.status_code == 200:
        if answer.headers["content-type"].startswith("text/event-stream"):  # it ended as a whole answer
            last = answer.content.rstrip().rsplit(b"\n\n", 1)[-1]
            assert ENDS[path] in last, answer.text[-300:]
        return
    assert answer.status_code == 400, answer.text
    error = answer.json()
    if path == "/v1/messages":
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        assert error["error"]["message"]
    else:
        assert error["error"]["type"] == "invalid_request_error" and error["error"]["message"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls("m"), st.booleans())
def test_no_body_gets_a_5xx_and_every_refusal_is_in_the_clients_shape(
        client: httpx.Client, call: tuple[str, dict[str, Any]], stream: bool) -> None:
    path, body = call
    check(client, path, {**body, "stream": True} if stream else body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["claude", "gemini"]).flatmap(calls))
def test_translated_to_anthropic_and_gemini_no_body_gets_a_5xx(client: httpx.Client,
                                                               call: tuple[str, dict[str, Any]]) -> None:
    path, body = call
    check(client, path, {**body, "stream": False})
