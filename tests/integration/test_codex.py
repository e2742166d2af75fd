"""The real Codex CLI through the gateway, on loopback with analytics off: `codex exec` runs a turn
in which the model calls Codex's shell tool and Codex sends the result back, against (a) an
OpenAI-compatible Chat Completions deployment, (b) an Anthropic deployment, (c) a deployment that
speaks Responses itself (passthrough: the provider receives what Codex sent but the model)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.agent_clis import Recorder, cli, codex_home, environment
from tests.support.anthropic_fake import ToolRoundTrip
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, sse_lines

KEY = "sk-gw-codex-0123456789abcdef"
MARK = "hello-from-tool"
DONE = "Done: the tool printed hello-from-tool."
ARGS = {"cmd": f"echo {MARK}"}

CONFIG = """
auth: {{keys: [{{name: codex, key: "{key}"}}]}}
providers:
  up: {upstream}
models:
  gpt-5-codex:
    deployments: [{{provider: up, model: {model}}}]
    retries: 0
    drop_unsupported_params: true
"""


def run_codex(gw: GatewayServer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    home, work = codex_home(tmp_path / "codex-home", gw.url, "GATEWAY_KEY"), tmp_path / "work"
    work.mkdir()
    env = environment(tmp_path, CODEX_HOME=str(home), GATEWAY_KEY=KEY)
    return subprocess.run([cli("codex"), "exec", "--skip-git-repo-check", f"Run echo {MARK} and say what it printed"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=180, check=False,
                          stdin=subprocess.DEVNULL)


def tool_output_sent(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("role") == "tool" and MARK in json.dumps(m.get("content")) for m in messages)


def test_codex_through_a_chat_completions_deployment(tmp_path: Path) -> None:
    cli("codex")
    seen: list[dict[str, Any]] = []

    def chat(request: Recorded) -> Reply:
        body = request.json
        seen.append(body)
        base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        names = [t["function"]["name"] for t in body.get("tools") or ()]
        if tool_output_sent(body["messages"]) or "exec_command" not in names:
            deltas: list[dict[str, Any]] = [{"role": "assistant", "content": DONE}]
            finish = "stop"
        else:
            call = {"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "exec_command", "arguments": json.dumps(ARGS)}}
            deltas = [{"role": "assistant", "reasoning_content": "I will run it."}, {"tool_calls": [call]}]
            finish = "tool_calls"
        chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        chunks += [{**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
                   {**base, "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48}}]
        return Reply(chunks=sse_lines(chunks))

    with FakeUpstream(chat) as upstream, GatewayServer(CONFIG.format(
            key=KEY, upstream=f'{{type: openai, base_url: "{upstream.url}/v1"}}', model="gpt-5-mini")) as gw:
        done = run_codex(gw, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert DONE in done.stdout
    assert any(tool_output_sent(body["messages"]) for body in seen), "Codex never sent the tool's output back"


def test_codex_through_an_anthropic_deployment(tmp_path: Path) -> None:
    cli("codex")
    fake = ToolRoundTrip("exec_command", ARGS, DONE)
    with FakeUpstream(fake) as upstream, GatewayServer(CONFIG.format(
            key=KEY, upstream=f'{{type: anthropic, base_url: "{upstream.url}", api_key: sk-ant-x}}',
            model="claude-sonnet-4-5")) as gw:
        done = run_codex(gw, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert DONE in done.stdout
    results = [b for r in upstream.requests for m in r.json["messages"] if isinstance(m["content"], list)
               for b in m["content"] if b.get("type") == "tool_result"]
    assert results and MARK in json.dumps(results)


def responses_events(body: dict[str, Any], n: int) -> bytes:
    """A Responses stream: a function call to Codex's shell tool, or the final text once its output is back."""
    has_output = any(isinstance(i, dict) and i.get("type") == "function_call_output" and MARK in json.dumps(i)
                     for i in body.get("input") or ())
    if has_output:
        item: dict[str, Any] = {"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                                "content": [{"type": "output_text", "text": DONE, "annotations": []}]}
    else:
        item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": "exec_command",
                "arguments": json.dumps(ARGS), "status": "completed"}
    response = {"id": f"resp_{n}", "object": "response", "created_at": 1, "model": body["model"],
                "status": "completed", "error": None, "incomplete_details": None, "output": [item],
                "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 25}}
    events = [{"type": "response.created", "response": {**response, "status": "in_progress", "output": []}},
              {"type": "response.output_item.added", "output_index": 0, "item": item},
              {"type": "response.output_item.done", "output_index": 0, "item": item},
              {"type": "response.completed", "response": response}]
    return b"".join(f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n".encode()
                    for i, e in enumerate(events))


def test_codex_passes_through_to_a_deployment_that_speaks_responses(tmp_path: Path) -> None:
    cli("codex")
    answered: list[bytes] = []

    def native(request: Recorded) -> Reply:
        stream = responses_events(request.json, len(answered))
        answered.append(stream)
        return Reply(chunks=[stream])

    with FakeUpstream(native) as upstream:
        gw = GatewayServer(CONFIG.format(key=KEY, model="gpt-5.4", upstream=(
            f'{{type: openai, base_url: "{upstream.url}/v1", responses: true}}')))
        recorder = Recorder(gw.app)
        gw.server.config.app = recorder
        with gw:
            done = run_codex(gw, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert DONE in done.stdout
    sent = [e for e in recorder.exchanges if e.method == "POST" and e.path == "/v1/responses"]
    received = [r for r in upstream.requests if r.path == "/v1/responses"]
    assert len(sent) == len(received) >= 2
    for client_side, provider_side in zip(sent, received, strict=True):
        assert provider_side.json == {**json.loads(client_side.body), "model": "gpt-5.4"}
    assert [bytes(e.answer) for e in sent] == answered
    assert any(MARK in json.dumps(r.json["input"]) for r in received[1:])
