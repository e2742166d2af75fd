"""Every recorded provider stream (tests/data/recorded-traffic), fed to its translator split anywhere:
one byte at a time, and at boundaries hypothesis picks. The client must read the same answer as when
the stream arrives whole, and that answer must mean what the provider sent."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.providers import StreamTranslator
from gateway.providers.anthropic import AnthropicAdapter
from gateway.providers.bedrock import BedrockAdapter
from gateway.providers.gemini import GeminiAdapter
from gateway.providers.openai import OpenAIAdapter
from gateway.schemas import Operation
from tests.support.recorded import Answer, Recording, facts, recordings, sse_answer

pytest.importorskip("botocore")

STREAMED = [r for r in recordings() if r.stream and r.status < 400]
ADAPTERS = {"anthropic": AnthropicAdapter, "gemini": GeminiAdapter, "bedrock": BedrockAdapter,
            "openai": lambda: OpenAIAdapter(None)}


def translate(recording: Recording, pieces: list[bytes]) -> Answer:
    """What a client reads when the provider's bytes arrive in these pieces."""
    translator: StreamTranslator = ADAPTERS[recording.provider]().stream_translator(
        Operation.CHAT, client_wants_usage=True, model=recording.data["upstream_model"])
    out = b""
    try:
        for piece in pieces:
            out += translator.feed(piece)
        out += translator.finish()
    except GatewayError as exc:
        answer = sse_answer(out)
        answer.error = (0, exc.message)
        return answer
    assert translator.done
    return sse_answer(out)


def expected(recording: Recording) -> Answer:
    answer = facts(recording)
    answer.signatures = ["".join(answer.signatures)] if answer.signatures else []
    return answer


def joined(answer: Answer) -> Answer:
    answer.signatures = ["".join(answer.signatures)] if answer.signatures else []
    return answer


def agrees(got: Answer, recording: Recording) -> bool:
    """The provider's answer, or, for a provider error that came in the same read as everything
    before it (nothing handed over yet, so the router may still fall back), that error alone."""
    want = expected(recording)
    return joined(got) == want or (want.error is not None and got == Answer(error=want.error))


@pytest.mark.parametrize("recording", STREAMED, ids=lambda r: r.name)
def test_whole_stream_means_what_the_provider_sent(recording: Recording) -> None:
    assert agrees(translate(recording, [recording.body]), recording)


@pytest.mark.parametrize("recording", STREAMED, ids=lambda r: r.name)
def test_one_byte_at_a_time(recording: Recording) -> None:
    body = recording.body
    assert joined(translate(recording, [body[i:i + 1] for i in range(len(body))])) == expected(recording)


@pytest.mark.parametrize("recording", STREAMED, ids=lambda r: r.name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_split(recording: Recording, data: st.DataObject) -> None:
    body = recording.body
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(body) - 1), max_size=12))))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert agrees(translate(recording, pieces), recording)
