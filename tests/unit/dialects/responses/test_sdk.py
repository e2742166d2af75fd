"""The official `openai` SDK reads what the encoders produce: a loopback server answers its
`client.responses` calls with the encoders' bytes, and the SDK's own parsers and stream accumulator
must build the expected objects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pydantic
import pytest

from gateway.dialects.responses import StreamEncoder, encode_error, encode_response, parse_request
from gateway.errors import GatewayError, InvalidRequestError, PreviousResponseNotFoundError, RateLimitError
from tests.support.canonical import Call, Turn, chunks, completion, sse
from tests.support.servers import FakeUpstream, Recorded, Reply

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather now.", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}


class Answer(pydantic.BaseModel):
    city: str
    temperature_c: float


class Upstream:
    """Answers each SDK call by running the request through the dialect: `parse_request` must accept
    what the SDK sent, the canonical `turn` is encoded back."""

    def __init__(self) -> None:
        self.turn = Turn(text=["Hello"])
        self.error: GatewayError | None = None
        self.canonical: list[dict[str, Any]] = []
        self.encoders: list[StreamEncoder] = []

    def __call__(self, request: Recorded) -> Reply:
        body = request.json
        if self.error is not None:
            status, payload, headers = encode_error(self.error)
            return Reply(status=status, body=payload, headers=headers)
        self.canonical.append(parse_request(body))
        if not body.get("stream"):
            return Reply(json=encode_response(completion(self.turn), body, response_id="resp_sdk1",
                                              created_at=1700000000))
        encoder = StreamEncoder(body, response_id="resp_sdk1", created_at=1700000000)
        self.encoders.append(encoder)
        raw = sse(chunks(self.turn))
        # Out in small pieces, so the SDK's SSE decoder also sees events split across reads.
        out = [encoder.feed(raw[i:i + 40]) for i in range(0, len(raw), 40)] + [encoder.finish()]
        return Reply(chunks=[piece for piece in out if piece], content_type="text/event-stream")


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, openai.OpenAI]]:
    answers = Upstream()
    with FakeUpstream(answers) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0, timeout=10)
        yield answers, client
        client.close()


Fixture = tuple[Upstream, openai.OpenAI]


def test_create_reads_the_response_object(upstream: Fixture) -> None:
    answers, client = upstream
    answers.turn = Turn(reasoning=["Thinking."], signature="sig", text=["Hello ", "there"])
    response = client.responses.create(model="alias", input="Say hello", instructions="Be brief.",
                                       max_output_tokens=64, metadata={"app": "demo"}, temperature=0.2,
                                       reasoning={"summary": "auto"})
    assert response.id == "resp_sdk1" and response.status == "completed"
    assert response.output_text == "Hello there"
    assert response.instructions == "Be brief." and response.metadata == {"app": "demo"}
    assert response.max_output_tokens == 64 and response.temperature == 0.2
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Thinking."
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.input_tokens_details.cached_tokens,
            response.usage.output_tokens_details.reasoning_tokens) == (30, 10, 4)
    assert answers.canonical[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Say hello"}]


def test_stream_events_and_final_response(upstream: Fixture) -> None:
    answers, client = upstream
    answers.turn = Turn(reasoning=["Plan: ", "call it."], signature="sig", text=["Checking."],
                        calls=[Call("call_1", "get_weather", ['{"city"', ':"Paris"}'])], finish="tool_calls")
    with client.responses.stream(model="alias", input="Weather in Paris?", tools=[WEATHER],  # type: ignore[call-overload]
                                 reasoning={"effort": "low", "summary": "auto"}) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert {"response.reasoning_summary_text.delta", "response.output_text.delta",
            "response.function_call_arguments.delta", "response.function_call_arguments.done"} <= set(kinds)
    # The accumulator's object is the terminal event's (the SDK adds what it parsed: `parsed` on text
    # parts, `parsed_arguments` on strict function calls).
    accumulated = final.model_dump(mode="json", exclude_unset=True)["output"]
    for item in accumulated:
        item.pop("parsed_arguments", None)
        for part in item.get("content") or ():
            part.pop("parsed", None)
    assert accumulated == answers.encoders[0].final_response()["output"]
    call = final.output[2]
    assert call.type == "function_call" and call.call_id == "call_1" and call.arguments == '{"city":"Paris"}'
    assert final.output_text == "Checking."
    assert answers.canonical[0]["reasoning_effort"] == "low"
    assert answers.canonical[0]["stream_options"] == {"include_usage": True}


def test_parse_gives_the_pydantic_model(upstream: Fixture) -> None:
    answers, client = upstream
    answers.turn = Turn(text=['{"city": "Paris", ', '"temperature_c": 21.5}'])
    parsed = client.responses.parse(model="alias", input="Weather in Paris as JSON", text_format=Answer)
    assert parsed.output_parsed == Answer(city="Paris", temperature_c=21.5)
    response_format = answers.canonical[0]["response_format"]
    assert response_format["type"] == "json_schema" and response_format["json_schema"]["name"] == "Answer"
    assert response_format["json_schema"]["strict"] is True


def test_streamed_parse_and_function_call_arguments(upstream: Fixture) -> None:
    answers, client = upstream
    answers.turn = Turn(calls=[Call("call_9", "get_weather", ['{"city":', '"Oslo"}'])], finish="tool_calls")
    with client.responses.stream(model="alias", input="Weather?", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        done = [event for event in stream if event.type == "response.function_call_arguments.done"]
        final = stream.get_final_response()
    assert done[0].arguments == '{"city":"Oslo"}'
    assert final.output[0].type == "function_call" and final.output[0].name == "get_weather"


def test_incomplete_answer(upstream: Fixture) -> None:
    answers, client = upstream
    answers.turn = Turn(text=["cut sh"], finish="length")
    response = client.responses.create(model="alias", input="Long story")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    with client.responses.stream(model="alias", input="Long story") as stream:
        kinds = [event.type for event in stream]
    assert kinds[-1] == "response.incomplete"


@pytest.mark.parametrize(("error", "exception"), [
    (InvalidRequestError("Invalid value for 'input[0].type'.", param="input[0].type"), openai.BadRequestError),
    (PreviousResponseNotFoundError("resp_gone"), openai.BadRequestError),
    (RateLimitError("Slow down.", headers={"retry-after": "3"}), openai.RateLimitError),
])
def test_errors_raise_the_sdk_exception(upstream: Fixture, error: GatewayError,
                                        exception: Callable[..., Exception]) -> None:
    answers, client = upstream
    answers.error = error
    with pytest.raises(exception) as raised:  # type: ignore[call-overload]
        client.responses.create(model="alias", input="hi")
    assert raised.value.code == error.code
    assert raised.value.param == error.param
