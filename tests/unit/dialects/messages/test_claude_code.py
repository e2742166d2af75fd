"""Claude Code itself against the codec: a loopback fake Anthropic API that parses each request with
parse_request and answers with StreamEncoder's output for a canonical stream. Claude Code must run
the tool the encoded stream asks for, send its result (and the signed thinking block) back, and
finish with the encoded text.

Needs the `claude` CLI (tests.support.agent_clis finds it: `.ci/run` installs it); it never leaves
loopback: telemetry, updates and error reports are off."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from gateway.dialects.messages import StreamEncoder, parse_request
from tests.support.agent_clis import cli, environment
from tests.support.messages import sse
from tests.support.servers import FakeUpstream, Recorded, Reply


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


USAGE = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x", "choices": [],
         "usage": {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940,
                   "prompt_tokens_details": {"cached_tokens": 500, "cache_write_tokens": 100}}}


def test_claude_code_runs_a_tool_through_the_codec(tmp_path: Path) -> None:
    claude = cli("claude")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello from notes\n")
    canonical_requests: list[dict[str, Any]] = []

    def answer(request: Recorded) -> Reply:
        if request.method != "POST":
            return Reply(body=b"")  # the startup connectivity probe (HEAD /)
        body = request.json
        canonical = parse_request(body)
        canonical_requests.append(canonical)
        if any(m["role"] == "tool" for m in canonical["messages"]):
            chunks = [chunk({"content": "The notes say: hello from notes."}), chunk({}, "stop")]
        else:
            arguments = json.dumps({"file_path": str(notes)})
            chunks = [chunk({"reasoning_content": "I should read the file."}),
                      chunk({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "c2lnbmF0dXJl"}]}),
                      chunk({"content": "Reading it."}),
                      chunk({"tool_calls": [{"index": 0, "id": "call_abc", "type": "function",
                                             "function": {"name": "Read", "arguments": arguments[:10]}}]}),
                      chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[10:]}}]}),
                      chunk({}, "tool_calls")]
        encoder = StreamEncoder(body, input_tokens=700)
        return Reply(chunks=[encoder.feed(sse([*chunks, USAGE])) + encoder.finish()], content_type="text/event-stream")

    with FakeUpstream(answer) as upstream:
        env = environment(tmp_path, ANTHROPIC_BASE_URL=upstream.url, ANTHROPIC_API_KEY="sk-test")
        done = subprocess.run([claude, "-p", "What does notes.txt say?", "--output-format", "json"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["result"] == "The notes say: hello from notes."
    assert result["num_turns"] == 2
    # Claude Code summed the usage of both turns as message_delta reported it.
    assert (result["usage"]["input_tokens"], result["usage"]["cache_read_input_tokens"],
            result["usage"]["cache_creation_input_tokens"]) == (600, 1000, 200)
    second = canonical_requests[-1]["messages"]
    assistant = next(m for m in second if m.get("tool_calls"))
    assert assistant["thinking_blocks"] == [{"type": "thinking", "thinking": "I should read the file.",
                                             "signature": "c2lnbmF0dXJl"}]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"file_path": str(notes)}
    tool = second[second.index(assistant) + 1]
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_abc" and "hello from notes" in str(tool["content"])
