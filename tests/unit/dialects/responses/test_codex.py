"""The real Codex CLI reads the stream encoder's output: a loopback upstream runs each request Codex
sends through `parse_request` and answers a canonical turn through `StreamEncoder`. Codex must run the
tool call it gets, send the result back with the reasoning item it received, and finish the turn.
Skipped when the `codex` binary is not installed (tests/support/agent_clis.py), except under CI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from gateway.dialects.responses import StreamEncoder, parse_request
from tests.support.agent_clis import cli, codex_home, environment
from tests.support.canonical import Call, Turn, chunks, sse
from tests.support.servers import FakeUpstream, Recorded, Reply

THINKING = Turn(reasoning=["I should run ", "the command."], signature="sig-codex")


def shell_call(tools: list[dict[str, Any]]) -> Call:
    """A call to the shell tool this Codex version offers."""
    names = {tool.get("name") for tool in tools}
    if "exec_command" in names:
        return Call("call_1", "exec_command", [json.dumps({"cmd": "echo hello-from-tool"})])
    if "shell_command" in names:
        return Call("call_1", "shell_command", [json.dumps({"command": "echo hello-from-tool"})])
    return Call("call_1", "shell", [json.dumps({"command": ["bash", "-lc", "echo hello-from-tool"]})])


class Model:
    def __init__(self) -> None:
        self.canonical: list[dict[str, Any]] = []

    def __call__(self, request: Recorded) -> Reply:
        body = request.json
        canonical = parse_request(body, drop_builtin_tools=True)
        self.canonical.append(canonical)
        if any(message["role"] == "tool" for message in canonical["messages"]):
            turn = Turn(text=["The command printed ", "hello-from-tool."])
        else:
            turn = Turn(reasoning=THINKING.reasoning, signature=THINKING.signature,
                        calls=[shell_call(body["tools"])], finish="tool_calls")
        encoder = StreamEncoder(body)
        raw = sse(chunks(turn))
        pieces = [encoder.feed(raw[i:i + 64]) for i in range(0, len(raw), 64)] + [encoder.finish()]
        return Reply(chunks=[piece for piece in pieces if piece], content_type="text/event-stream")


def run_codex(home: Path, work: Path, url: str) -> subprocess.CompletedProcess[str]:
    work.mkdir()
    env = environment(home.parent, CODEX_HOME=str(codex_home(home, url, "GATEWAY_TEST_KEY")),
                      GATEWAY_TEST_KEY="sk-test", NO_COLOR="1")
    prompt = "Run echo hello-from-tool and tell me what it printed"
    return subprocess.run([cli("codex"), "exec", "--skip-git-repo-check", prompt], cwd=work, env=env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, check=False)


def test_codex_runs_a_tool_call_and_finishes_the_turn(tmp_path: Path) -> None:
    model = Model()
    with FakeUpstream(model) as upstream:
        done = run_codex(tmp_path / "home", tmp_path / "work", upstream.url)
        sent = [request.json for request in upstream.requests]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "The command printed hello-from-tool." in done.stdout
    assert len(sent) == 2
    outputs = [item for item in sent[1]["input"] if item.get("type") == "function_call_output"]
    assert outputs and outputs[0]["call_id"] == "call_1" and "hello-from-tool" in outputs[0]["output"]
    # Codex sent back the reasoning item with the gateway's encrypted content: the signed block is back.
    assistant = next(m for m in model.canonical[1]["messages"] if m["role"] == "assistant")
    assert assistant["thinking_blocks"] == THINKING.blocks
    assert assistant["reasoning_content"] == "I should run the command."
