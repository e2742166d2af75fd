"""A conversation continued with `previous_response_id`: what the encoders produce is stored, rebuilt
and parsed into the next canonical request, whichever provider answers it."""

from __future__ import annotations

from gateway.config import GatewayConfig
from gateway.conversations import Conversations
from gateway.dialects.responses import StreamEncoder, encode_response, parse_request
from gateway.store.memory import MemoryStore
from tests.support.canonical import Call, Turn, chunks, completion, sse


def conversations() -> Conversations:
    return Conversations.from_config(MemoryStore(), GatewayConfig().responses)


async def test_a_tool_turn_continues_from_the_stored_response() -> None:
    store = conversations()
    tools = [{"type": "function", "name": "lookup"}]
    first = {"model": "claude", "input": "Find it.", "tools": tools, "stream": True}
    turn = Turn(reasoning=["Look it up."], signature="sig-1", calls=[Call("call_1", "lookup", ["{}"])],
                finish="tool_calls")
    encoder = StreamEncoder(first, response_id="resp_one", created_at=1)
    encoder.feed(sse(chunks(turn)))
    encoder.finish()
    await store.put("key-a", encoder.final_response(), first["input"])

    second = {"model": "gpt", "previous_response_id": "resp_one", "tools": tools,
              "input": [{"type": "function_call_output", "call_id": "call_1", "output": "42"}]}
    canonical = parse_request(second, await store.history("resp_one", "key-a"))
    assert [m["role"] for m in canonical["messages"]] == ["user", "assistant", "tool"]
    assistant = canonical["messages"][1]
    assert assistant["thinking_blocks"] == turn.blocks and assistant["tool_calls"][0]["id"] == "call_1"

    answer = encode_response(completion(Turn(text=["It is 42."])), second, response_id="resp_two", created_at=2)
    assert answer["previous_response_id"] == "resp_one"
    await store.put("key-a", answer, second["input"])
    third = parse_request({"model": "m", "previous_response_id": "resp_two", "input": "Thanks"},
                          await store.history("resp_two", "key-a"))
    assert [m["role"] for m in third["messages"]] == ["user", "assistant", "tool", "assistant", "user"]
    assert third["messages"][3]["content"] == "It is 42."
