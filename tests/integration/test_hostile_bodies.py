"""Bodies of every shape, right and wrong, sent to the real app in each client API (to the built-in
mock, streamed and not): none gets a 5xx, and every refusal is a 400 in the client's own error shape
(OpenAI's `{"error": {...}}`, Anthropic's `{"type": "error", ...}`) naming what was wrong."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.bodies import chat_body, messages_body, responses_body, with_model
from tests.support.servers import MOCK_CONFIG, GatewayServer

CALLS = st.one_of(
    st.tuples(st.just("/v1/responses"), with_model(responses_body, "m")),
    st.tuples(st.just("/v1/messages"), with_model(messages_body, "m")),
    st.tuples(st.just("/v1/chat/completions"), with_model(chat_body, "m")),
)


# What the last event of a stream that ended as a whole answer (not a failure) holds, in each API.
ENDS = {"/v1/responses": b'"type":"response.completed"', "/v1/messages": b'{"type":"message_stop"}',
        "/v1/chat/completions": b"data: [DONE]"}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with GatewayServer(MOCK_CONFIG) as gw, httpx.Client(base_url=gw.url, timeout=30) as http:
        yield http


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(CALLS, st.booleans())
def test_no_body_gets_a_5xx_and_every_refusal_is_in_the_clients_shape(
        client: httpx.Client, call: tuple[str, dict[str, Any]], stream: bool) -> None:
    path, body = call
    if stream:
        body = {**body, "stream": True}
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
