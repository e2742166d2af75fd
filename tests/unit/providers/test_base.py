"""The one gate every adapter's token counts pass through (gateway.providers.base.token_count)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects.messages.usage import usage_from_body as messages_usage
from gateway.dialects.responses.usage import usage_of as responses_usage
from gateway.errors import UpstreamProtocolError
from gateway.providers.anthropic import usage_of
from gateway.providers.base import MAX_TOKEN_COUNT, token_count
from gateway.providers.gemini import usage_from as gemini_usage
from gateway.providers.openai import usage_from as openai_usage


@given(st.integers(min_value=0, max_value=MAX_TOKEN_COUNT - 1))
def test_a_count_in_range_is_taken_as_is(value: int) -> None:
    assert token_count({"n": value}, "n") == value


def test_absent_and_null_counts_are_zero() -> None:
    assert token_count({}, "n") == 0 and token_count({"n": None}, "n") == 0


@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_TOKEN_COUNT), st.floats(), st.text(),
                 st.booleans(), st.lists(st.integers()), st.dictionaries(st.text(), st.integers())))
def test_anything_else_is_a_bad_upstream_answer(value: Any) -> None:
    with pytest.raises(UpstreamProtocolError) as raised:
        token_count({"n": value}, "n")
    assert raised.value.http_status == 502 and raised.value.retryable
    assert len(raised.value.message) < 200  # 10**300 is not echoed whole


@pytest.mark.parametrize("parse, raw", [
    (openai_usage, {"prompt_tokens": 10**30, "completion_tokens": 1}),
    (openai_usage, {"prompt_tokens": 1, "completion_tokens": -1}),
    (openai_usage, {"prompt_tokens": "12", "completion_tokens": 1}),
    (openai_usage, {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2.5}}),
    (usage_of, {"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": -5}),
    (gemini_usage, {"promptTokenCount": 1, "candidatesTokenCount": "many"}),
])
def test_every_adapter_refuses_a_broken_count(parse: Any, raw: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        parse(raw)


@pytest.mark.parametrize("body", [
    b'{"type": "message", "usage": {"input_tokens": 1000000000000000000000000000000, "output_tokens": 1}}',
    b'{"type": "message", "usage": {"input_tokens": 3, "output_tokens": -1}}',
])
def test_a_passed_through_messages_answer_with_a_broken_count_is_refused(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        messages_usage(body)


def test_a_passed_through_responses_answer_with_a_broken_count_is_refused() -> None:
    with pytest.raises(UpstreamProtocolError):
        responses_usage({"input_tokens": "12", "output_tokens": 1})
    assert responses_usage({"input_tokens": 12, "output_tokens": 1, "input_tokens_details": None}) is not None
