"""The OpenAI Agents SDK (its default model speaks the Responses API) runs an agent with a tool
through the gateway, translated to an OpenAI-compatible Chat Completions deployment."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

agents = pytest.importorskip("agents")

KEY = "sk-gw-agents-0123456789abcdef"
CONFIG = """
auth: {{keys: [{{name: agents, key: "{key}"}}]}}
providers: {{oai: {{type: openai, base_url: "{url}/v1"}}}}
models: {{gpt: {{deployments: [{{provider: oai, model: gpt-5-mini}}], retries: 0}}}}
"""


def test_an_agent_with_a_tool_runs_through_the_gateway() -> None:
    seen: list[dict[str, Any]] = []

    def chat(request: Recorded) -> Reply:
        body = request.json
        seen.append(body)
        tool_messages = [m for m in body["messages"] if m.get("role") == "tool"]
        if tool_messages:
            message: dict[str, Any] = {"role": "assistant", "content": f"It is {tool_messages[-1]['content']}."}
            finish = "stop"
        else:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]}
            finish = "tool_calls"
        return Reply(json={"id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                           "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                           "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        return f"sunny in {city}"

    async def run(url: str) -> Any:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0) as client:
            agents.set_tracing_disabled(True)
            model = agents.OpenAIResponsesModel(model="gpt", openai_client=client)
            agent = agents.Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather],
                                 model=model)
            return await agents.Runner.run(agent, "What is the weather in Paris?")

    with FakeUpstream(chat) as upstream, GatewayServer(CONFIG.format(key=KEY, url=upstream.url)) as gw:
        result = asyncio.run(run(gw.url))
    assert result.final_output == "It is sunny in Paris."
    assert any(m.get("role") == "tool" for m in seen[-1]["messages"])
