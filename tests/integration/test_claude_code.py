"""The real Claude Code CLI through the gateway, on loopback with telemetry off: `claude -p` runs a
turn in which the model calls the Read tool and Claude Code sends the tool's result back, against
(a) an Anthropic deployment (passthrough: the provider receives what Claude Code sent but the model,
and Claude Code receives the provider's events byte for byte), (b) an OpenAI-compatible deployment
with tool calls and reasoning text, (c) the mock."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_clis import Recorder, cli, environment
from tests.support.anthropic_fake import ToolRoundTrip
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, sse_lines

KEY = "sk-gw-claude-code-0123456789abcdef"
NOTES = "The notes say: the gateway speaks Messages.\n"
ANSWER = "notes.txt says the gateway speaks Messages."

CONFIG = """
auth: {{keys: [{{name: claude-code, key: "{key}"}}]}}
logging: {{access_log: true}}
providers:
  up: {upstream}
  mock: {{type: mock}}
models:
  claude: {{deployments: [{{provider: {provider}, model: {model}}}], retries: 0}}
model_patterns: {{"claude-*": claude}}
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text(NOTES)
    (tmp_path / "home").mkdir()
    return work


def run_claude(gw: GatewayServer, work: Path) -> subprocess.CompletedProcess[str]:
    env = environment(work.parent / "home", ANTHROPIC_BASE_URL=gw.url, ANTHROPIC_API_KEY=KEY)
    return subprocess.run([cli("claude"), "-p", "What does notes.txt say?", "--allowedTools", "Read"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def recorded_gateway() -> Iterator[Any]:
    def start(config: str) -> tuple[GatewayServer, Recorder]:
        gw = GatewayServer(config)
        recorder = Recorder(gw.app)
        gw.server.config.app = recorder
        return gw, recorder
    yield start


def messages_calls(recorder: Recorder) -> list[Any]:
    return [e for e in recorder.exchanges if e.method == "POST" and e.path == "/v1/messages"]


def test_claude_code_through_an_anthropic_deployment(workdir: Path, recorded_gateway: Any) -> None:
    cli("claude")
    fake = ToolRoundTrip("Read", {"file_path": str(workdir / "notes.txt")}, ANSWER)
    with FakeUpstream(fake) as upstream:
        config = CONFIG.format(key=KEY, upstream=f'{{type: anthropic, base_url: "{upstream.url}", api_key: sk-ant-x}}',
                               provider="up", model="claude-sonnet-4-5-20250929")
        gw, recorder = recorded_gateway(config)
        with gw:
            done = run_claude(gw, workdir)
        assert done.returncode == 0, done.stderr
        assert ANSWER in done.stdout
        sent = messages_calls(recorder)
        received = [r for r in upstream.requests if r.path == "/v1/messages"]
        assert len(sent) == len(received) >= 2
        for client_side, provider_side in zip(sent, received, strict=True):
            body = json.loads(client_side.body)
            assert provider_side.json == {**body, "model": "claude-sonnet-4-5-20250929"}
            anthropic_headers = {k: v for k, v in client_side.headers.items() if k.startswith("anthropic-")}
            assert anthropic_headers and all(provider_side.headers[k] == v for k, v in anthropic_headers.items())
            assert provider_side.headers["x-api-key"] == "sk-ant-x"
        # Its tool's result went back: the second turn carries it, to the provider as Claude Code wrote it.
        results = [b for m in received[-1].json["messages"] for b in m["content"]
                   if isinstance(m["content"], list) and b.get("type") == "tool_result"]
        assert results and "gateway speaks Messages" in json.dumps(results)
        # Byte for byte: what the provider streamed is what Claude Code read.
        assert [bytes(exchange.answer) for exchange in sent] == fake.sent


def test_claude_code_through_an_openai_compatible_deployment(workdir: Path, recorded_gateway: Any) -> None:
    cli("claude")
    seen: list[dict[str, Any]] = []

    def openai_with_tools(request: Recorded) -> Reply:
        body = request.json
        seen.append(body)
        base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        tool_result = any(m.get("role") == "tool" for m in body["messages"])
        offers_read = any(t["function"]["name"] == "Read" for t in body.get("tools") or ())
        if tool_result or not offers_read:
            deltas: list[dict[str, Any]] = [{"role": "assistant", "reasoning_content": "The file was read."},
                                            {"content": ANSWER}]
            finish = "stop"
        else:
            call = {"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "Read", "arguments": json.dumps({"file_path": str(workdir / "notes.txt")})}}
            deltas = [{"role": "assistant", "reasoning_content": "I should read it."}, {"tool_calls": [call]}]
            finish = "tool_calls"
        chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 9,
                                                        "total_tokens": 59}})
        return Reply(chunks=sse_lines(chunks))

    with FakeUpstream(openai_with_tools) as upstream:
        config = CONFIG.format(key=KEY, upstream=f'{{type: openai, base_url: "{upstream.url}/v1"}}',
                               provider="up", model="gpt-5-mini")
        gw, _ = recorded_gateway(config)
        with gw:
            done = run_claude(gw, workdir)
    assert done.returncode == 0, done.stderr
    assert ANSWER in done.stdout
    tool_turns = [b for b in seen if any(m.get("role") == "tool" for m in b["messages"])]
    assert tool_turns, "Claude Code never sent the tool's result back"
    tool_message = next(m for m in tool_turns[-1]["messages"] if m.get("role") == "tool")
    assert tool_message["tool_call_id"] == "call_1"
    assert "gateway speaks Messages" in json.dumps(tool_message["content"])


def test_claude_code_on_the_mock(workdir: Path, recorded_gateway: Any) -> None:
    cli("claude")
    config = CONFIG.format(key=KEY, upstream="{type: mock}", provider="mock", model="echo")
    gw, recorder = recorded_gateway(config)
    with gw:
        done = run_claude(gw, workdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert messages_calls(recorder)
