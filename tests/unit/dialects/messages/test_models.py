"""count_tokens and the Anthropic-shaped models page."""

from __future__ import annotations

import anthropic
import pytest

from gateway.dialects.messages import count_tokens, models_page, parse_request
from gateway.errors import InvalidRequestError
from gateway.tokens import TokenCounter
from tests.support.messages import claude_code
from tests.support.servers import FakeUpstream, Reply


def test_count_tokens_counts_what_the_tpm_reserve_counts() -> None:
    counter = TokenCounter()
    sent = {k: v for k, v in claude_code("tool_result_turn")["body"].items() if k != "max_tokens"}
    canonical = parse_request({**sent, "max_tokens": 1})
    assert count_tokens(sent, counter) == counter.count_prompt("chat", canonical, sent["model"])[0]


def test_count_tokens_grows_with_system_messages_and_tools() -> None:
    counter = TokenCounter()
    base = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hello"}]}
    bare = count_tokens(base, counter)
    with_system = count_tokens({**base, "system": "You are terse. " * 20}, counter)
    tools = [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}]
    assert bare < with_system < count_tokens({**base, "system": "You are terse. " * 20, "tools": tools}, counter)


def test_count_tokens_counts_a_body_with_a_server_tool_and_refuses_a_bad_one() -> None:
    counter = TokenCounter()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    assert count_tokens(body, counter) > 0
    with pytest.raises(InvalidRequestError, match="messages: Field required"):
        count_tokens({"model": "m"}, counter)


def test_the_models_page_is_anthropics_list() -> None:
    page = models_page(["claude-sonnet", "claude-haiku"], 1_760_000_000)
    model = {"type": "model", "created_at": "2025-10-09T08:53:20Z", "lifecycle": "active"}
    assert page == {"data": [{**model, "id": "claude-sonnet", "display_name": "claude-sonnet"},
                             {**model, "id": "claude-haiku", "display_name": "claude-haiku"}],
                    "has_more": False, "first_id": "claude-sonnet", "last_id": "claude-haiku"}
    with (FakeUpstream(lambda _r: Reply(json=page)) as upstream,
          anthropic.Anthropic(base_url=upstream.url, api_key="sk-test", max_retries=0) as client):
        listed = list(client.models.list())
    assert [m.id for m in listed] == ["claude-sonnet", "claude-haiku"]
    for info in page["data"]:
        anthropic.types.ModelInfo.model_validate(info)


def test_an_empty_models_page() -> None:
    assert models_page([], 0) == {"data": [], "has_more": False, "first_id": None, "last_id": None}
