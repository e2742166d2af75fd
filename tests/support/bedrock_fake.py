"""A fake Bedrock runtime: Converse and ConverseStream wire formats, SigV4 checked on every request.

The signature check is written from the AWS Signature Version 4 specification (hmac/hashlib), not
with botocore, so it verifies the gateway's botocore-based signing independently.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from tests.support import aws_eventstream as es
from tests.support.servers import Recorded, Reply

EVENTSTREAM = "application/vnd.amazon.eventstream"


def sigv4_signature(method: str, raw_path: str, headers: dict[str, str], body: bytes, signed: list[str],
                    secret: str, region: str, service: str = "bedrock") -> str:
    """The server's side of SigV4 for a request without a query string (non-S3: the received,
    already-encoded path is URI-encoded once more)."""
    lower = {k.lower(): v for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{' '.join(lower[name].split())}\n" for name in signed)
    canonical = "\n".join([method, quote(raw_path, safe="/~"), "", canonical_headers, ";".join(signed),
                           hashlib.sha256(body).hexdigest()])
    amz_date = lower["x-amz-date"]
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization_fields(value: str) -> dict[str, str]:
    assert value.startswith("AWS4-HMAC-SHA256 "), value
    return dict(part.strip().split("=", 1) for part in value[len("AWS4-HMAC-SHA256 "):].split(","))


def check_sigv4(request: Recorded, access_key: str, secret: str, region: str) -> None:
    fields = authorization_fields(request.headers["authorization"])
    assert fields["Credential"].startswith(f"{access_key}/")
    assert fields["Credential"].endswith(f"/{region}/bedrock/aws4_request")
    signed = fields["SignedHeaders"].split(";")
    assert "host" in signed and "x-amz-date" in signed
    # The recorded path is decoded; the tests use model ids whose wire path has no %-escapes.
    expected = sigv4_signature(request.method, request.path, request.headers, request.body, signed, secret, region)
    assert fields["Signature"] == expected, "SigV4 signature does not verify"


def converse_response(content: list[dict[str, Any]], *, stop: str = "end_turn", input_tokens: int = 10,
                      output_tokens: int = 4, cache_read: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {"inputTokens": input_tokens, "outputTokens": output_tokens,
                             "totalTokens": input_tokens + output_tokens + cache_read}
    if cache_read:
        usage["cacheReadInputTokens"] = cache_read
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": usage, "metrics": {"latencyMs": 42}}


def stream_frames(text_parts: list[str], tool_uses: Sequence[tuple[str, str, list[str]]] = (),
                  *, stop: str = "end_turn", usage: dict[str, int] | None = None) -> list[bytes]:
    """ConverseStream frames: text deltas in block 0, then one block per (id, name, input fragments)."""
    frames = [es.event("messageStart", {"role": "assistant"})]
    for part in text_parts:
        frames.append(es.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": part}}))
    if text_parts:
        frames.append(es.event("contentBlockStop", {"contentBlockIndex": 0}))
    for i, (tool_id, name, fragments) in enumerate(tool_uses, start=1 if text_parts else 0):
        frames.append(es.event("contentBlockStart", {"contentBlockIndex": i,
                                                     "start": {"toolUse": {"toolUseId": tool_id, "name": name}}}))
        for fragment in fragments:
            frames.append(es.event("contentBlockDelta", {"contentBlockIndex": i,
                                                         "delta": {"toolUse": {"input": fragment}}}))
        frames.append(es.event("contentBlockStop", {"contentBlockIndex": i}))
    frames.append(es.event("messageStop", {"stopReason": stop}))
    frames.append(es.event("metadata", {"usage": usage or {"inputTokens": 10, "outputTokens": 4, "totalTokens": 14},
                                        "metrics": {"latencyMs": 42}}))
    return frames


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message["role"] == "user":
            return " ".join(block["text"] for block in message["content"] if "text" in block)
    return ""


class BedrockFake:
    """Handler for FakeUpstream: checks the signature, then answers the next scripted Reply or, by
    default, echoes the last user text (as Converse JSON, or as event-stream frames)."""

    def __init__(self, access_key: str, secret: str, region: str) -> None:
        self.access_key, self.secret, self.region = access_key, secret, region
        self.script: list[Reply] = []

    def __call__(self, request: Recorded) -> Reply:
        check_sigv4(request, self.access_key, self.secret, self.region)
        if self.script:
            return self.script.pop(0)
        text = "echo: " + last_user_text(request.json)
        if request.path.endswith("/converse-stream"):
            assert request.headers["accept"] == EVENTSTREAM
            return Reply(chunks=stream_frames([text[:6], text[6:]]), content_type=EVENTSTREAM)
        return Reply(json=converse_response([{"text": text}]))


def stream_reply(frames: list[bytes]) -> Reply:
    return Reply(chunks=frames, content_type=EVENTSTREAM)


def aws_error(status: int, error_type: str, message: str) -> Reply:
    return Reply(status=status, json={"message": message},
                 headers={"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"})
