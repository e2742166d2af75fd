"""Every recorded provider exchange (tests/data/recorded-traffic), replayed through the real app.

A loopback upstream serves the recorded answer byte for byte (status, headers, body; streams as
recorded, then cut at awkward places); the gateway runs under uvicorn with the provider configured as
in the recording; the official `openai` SDK sends the recording's OpenAI-format request. What the SDK
reads back must mean what the provider sent (tests/support/recorded.py reads the provider's answer by
the provider's own rules), and the request the upstream received must carry what the recorded
request carried (path, tools, system prompt).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import openai
import pytest

from tests.support.recorded import (
    Answer,
    Recording,
    facts,
    recordings,
    sdk_answer,
    sdk_stream_answer,
)
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

pytest.importorskip("botocore")

RECORDINGS = recordings()
STREAMED = [r for r in RECORDINGS if r.stream and r.status < 400]

SDK_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
    404: openai.NotFoundError, 429: openai.RateLimitError,
}


def alias(recording: Recording) -> str:
    return recording.name.replace("/", "--")


def provider_config(recording: Recording, url: str) -> dict[str, Any]:
    kind = recording.provider
    if kind == "anthropic":
        return {"type": "anthropic", "base_url": url, "api_key": "sk-ant-replay"}
    if kind == "gemini" and recording.data.get("vertex"):
        vertex = recording.data["vertex"]
        return {"type": "gemini", "base_url": url, "vertex_project": vertex["project"],
                "vertex_location": vertex["location"], "access_token": "ya29.replay"}
    if kind == "gemini":
        return {"type": "gemini", "base_url": url, "api_key": "AIza-replay"}
    if kind == "bedrock":
        return {"type": "bedrock", "base_url": url, "region": "us-east-1",
                "access_key_id": "AKIAREPLAY", "secret_access_key": "replay/secret"}
    if kind == "azure":
        return {"type": "azure", "base_url": url, "api_key": "azure-replay",
                "api_version": recording.data["api_version"]}
    return {"type": "openai", "base_url": url + "/v1", "api_key": "sk-replay"}


class Replayer:
    """Serves whichever recording the running test chose."""

    def __init__(self) -> None:
        self.reply = Reply()

    def __call__(self, request: Recorded) -> Reply:
        return self.reply


@pytest.fixture(scope="module")
def replayer() -> Replayer:
    return Replayer()


@pytest.fixture(scope="module")
def upstream(replayer: Replayer) -> Iterator[FakeUpstream]:
    with FakeUpstream(replayer) as server:
        yield server


@pytest.fixture(scope="module")
def gateway_url(upstream: FakeUpstream) -> Iterator[str]:
    config = {
        "auth": {"required": False},
        "providers": {alias(r): provider_config(r, upstream.url) for r in RECORDINGS},
        "models": {alias(r): {"deployments": [{"provider": alias(r), "model": r.data["upstream_model"]}],
                              "retries": 0} for r in RECORDINGS},
    }
    with GatewayServer(json.dumps(config)) as gateway:
        yield gateway.url + "/v1"


@pytest.fixture
def sdk(gateway_url: str, make_client: Callable[..., openai.OpenAI]) -> openai.OpenAI:
    return make_client(gateway_url, timeout=30)


def replay(sdk: openai.OpenAI, recording: Recording) -> Answer:
    """Send the recording's client request; what the SDK read back (errors included)."""
    request = {**recording.data["client_request"], "model": alias(recording)}
    chunks: list[Any] = []
    try:
        if not recording.stream:
            return sdk_answer(sdk.chat.completions.create(**request))
        for chunk in sdk.chat.completions.create(**request):
            chunks.append(chunk)
    except openai.APIStatusError as exc:
        assert type(exc) is SDK_ERRORS.get(exc.status_code, openai.InternalServerError)
        return Answer(error=(exc.status_code, exc.message))
    except openai.APIError as exc:  # an error event inside the stream
        answer = sdk_stream_answer(chunks)
        answer.error = (0, exc.message)
        return answer
    return sdk_stream_answer(chunks)


def same_meaning(got: Answer, sent: Answer) -> None:
    if sent.error is not None:
        assert got.error is not None, "the provider's error did not reach the client"
        assert got.error[0] == sent.error[0]
        assert sent.error[1] in got.error[1]
        got.error = sent.error  # the rest must agree too (text streamed before a mid-stream error)
    # Signatures may arrive in pieces (Anthropic signature deltas); what goes back is their concatenation.
    assert "".join(got.signatures) == "".join(sent.signatures)
    got.signatures = sent.signatures
    assert got == sent


@pytest.mark.parametrize("recording", RECORDINGS, ids=lambda r: r.name)
def test_replay(recording: Recording, sdk: openai.OpenAI, replayer: Replayer, upstream: FakeUpstream) -> None:
    replayer.reply = recording.reply()
    before = len(upstream.requests)
    expected, got = facts(recording), replay(sdk, recording)
    if expected.error is not None and expected.error[0] == 0 and got.error is not None and got.error[0] == 502:
        # The error came in the same read as everything before it: nothing had reached the client,
        # so the attempt failed as a whole (a fallback could still answer) with the provider's message.
        expected = Answer(error=(502, expected.error[1]))
    same_meaning(got, expected)
    assert len(upstream.requests) == before + 1, "one request upstream, no retry or resend"
    request_carries_the_recorded_one(recording, upstream.requests[-1])


def awkward_cuts(recording: Recording) -> list[bytes]:
    """The body cut right after its first byte, inside a multi-byte UTF-8 character, inside a CRLF,
    inside the header of the second event-stream frame, and just before an error event, wherever the
    body has one."""
    body = recording.body
    cuts = {1}
    error = body.find(b'"error"')
    if error >= 0:
        cuts.add(body.rfind(b"\n\n", 0, error) + 2)
    multibyte = next((i for i, byte in enumerate(body) if byte >= 0xC0), None)
    if multibyte is not None:
        cuts.add(multibyte + 1)
    crlf = body.find(b"\r\n")
    if crlf >= 0:
        cuts.add(crlf + 1)
    if recording.provider == "bedrock":
        second = int.from_bytes(body[:4], "big")
        cuts.update({second + 2, second + 7, second + 13})
    points = sorted(c for c in cuts if 0 < c < len(body))
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


@pytest.mark.parametrize("recording", STREAMED, ids=lambda r: r.name)
def test_replay_stream_cut_at_awkward_places(recording: Recording, sdk: openai.OpenAI,
                                             replayer: Replayer) -> None:
    # A pause between pieces lets each arrive in its own read at the gateway.
    replayer.reply = recording.reply(awkward_cuts(recording), pause=0.02)
    same_meaning(replay(sdk, recording), facts(recording))


# --- the request side ----------------------------------------------------------------------------


def request_carries_the_recorded_one(recording: Recording, received: Recorded) -> None:
    recorded_path = unquote(urlsplit(recording.data["recorded_request"]["uri"]).path)
    path = unquote(received.path)
    if recording.provider == "gemini":
        # The model and method; Vertex's API version differs (v1 here, v1beta1 in the recording).
        assert path.rsplit("/models/", 1)[1] == recorded_path.rsplit("/models/", 1)[1]
    else:
        assert path.endswith(recorded_path.removeprefix("/api")), (path, recorded_path)
    sent, body = recording.sent, received.json
    assert function_tools(recording.provider, body) == function_tools(recording.provider, sent)
    assert system_text(recording.provider, body) == system_text(recording.provider, sent)
    if recording.provider == "gemini":
        as_sent = {d["name"]: d.get("parameters_json_schema") for t in sent.get("tools") or ()
                   for d in t.get("function_declarations") or t.get("functionDeclarations") or ()}
        for tool in body.get("tools") or ():
            for declaration in tool["functionDeclarations"]:
                if "parametersJsonSchema" in declaration:
                    assert declaration["parametersJsonSchema"] == as_sent[declaration["name"]]


def function_tools(provider: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, JSON schema) of each client-defined function tool, where the provider takes JSON
    Schema as is; (name, None) where it takes its own schema dialect (Gemini's OpenAPI subset)."""
    tools = body.get("tools") or []
    if provider == "anthropic":  # server tools (web search, code execution) have a `type`
        return [(t["name"], t["input_schema"]) for t in tools if "input_schema" in t]
    if provider == "bedrock":
        specs = (body.get("toolConfig") or {}).get("tools") or []
        return [(s["toolSpec"]["name"], s["toolSpec"]["inputSchema"]["json"]) for s in specs]
    if provider == "gemini":
        # The recordings' client sent every schema as JSON Schema; the gateway only those Gemini's
        # OpenAPI subset cannot express (checked on their own below).
        return [(d["name"], None) for tool in tools
                for d in tool.get("functionDeclarations") or tool.get("function_declarations") or ()]
    return [(t["function"]["name"], t["function"].get("parameters")) for t in tools if t.get("type") == "function"]


def system_text(provider: str, body: dict[str, Any]) -> str:
    if provider == "anthropic":
        system = body.get("system") or ""
        return system if isinstance(system, str) else "".join(b.get("text", "") for b in system)
    if provider == "bedrock":
        return "".join(b.get("text", "") for b in body.get("system") or ())
    if provider == "gemini":
        instruction = body.get("systemInstruction") or body.get("system_instruction") or {}
        return "".join(p.get("text", "") for p in instruction.get("parts") or ())
    messages = body.get("messages") or ()
    return "".join(str(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
